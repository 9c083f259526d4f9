// Drives the srice demo page in a real headless Chromium (Debian's, through playwright-core):
// an empty question first (the page must say so), then upload, type, submit, wait for the answer and
// the pathway pictures, screenshot. Prints one JSON object with what it saw; tests/test_demo_browser.py
// asserts on it.
//
// usage: node demo_page.js URL IMAGE QUESTION SCREENSHOT [CHROMIUM]
"use strict";
const { chromium } = require("playwright-core");

const [url, image, question, screenshot, executable = "/usr/bin/chromium"] = process.argv.slice(2);
const TIMEOUT = 120000;

async function textOf(page, selector) {
  return (await page.locator(selector).first().innerText()).trim();
}

async function main() {
  const browser = await chromium.launch({
    executablePath: executable,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  const seen = { external_requests: [], console_errors: [], status_history: [] };
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const origin = new URL(url).origin;
    page.on("request", (r) => {
      if (!r.url().startsWith(origin) && !r.url().startsWith("data:") && !r.url().startsWith("blob:")) {
        seen.external_requests.push(r.url());
      }
    });
    page.on("console", (m) => m.type() === "error" && seen.console_errors.push(m.text()));
    await page.goto(url, { waitUntil: "load", timeout: TIMEOUT });
    seen.title = await page.title();
    await page.locator("#submit").waitFor({ timeout: TIMEOUT });

    await page.locator("#image input[type=file]").setInputFiles(image);
    await page.locator("#image img").first().waitFor({ timeout: TIMEOUT });

    // an empty question: a clear message, no model call
    await page.locator("#submit").click();
    const toast = page.locator(".toast-body").filter({ hasText: "question is empty" });
    await toast.first().waitFor({ timeout: TIMEOUT });
    seen.empty_question_message = await toast.first().innerText();
    await page.locator(".toast-close").first().click(); // out of the final screenshot
    await toast.first().waitFor({ state: "detached", timeout: TIMEOUT });

    await page.locator("#question textarea, #question input").first().fill(question);
    await page.locator("#submit").click();
    const began = Date.now();
    // poll the status box: the stages should stream in before the answer arrives
    while (Date.now() - began < TIMEOUT) {
      const status = await textOf(page, "#status");
      if (seen.status_history[seen.status_history.length - 1] !== status) seen.status_history.push(status);
      if (status.startsWith("Done")) break;
      await page.waitForTimeout(100);
    }
    seen.seconds = (Date.now() - began) / 1000;
    await page.waitForFunction(
      () => document.querySelectorAll("#pathways img").length > 0,
      null,
      { timeout: TIMEOUT },
    );
    // every gallery picture decoded (naturalWidth > 0), not just present
    await page.waitForFunction(
      () => [...document.querySelectorAll("#pathways img")].every((i) => i.complete && i.naturalWidth > 0),
      null,
      { timeout: TIMEOUT },
    );
    seen.answer = await page.locator("#answer textarea, #answer input").first().inputValue();
    seen.summary = await textOf(page, "#summary");
    seen.table = await textOf(page, "#pathway-table");
    seen.pathway_images = await page.locator("#pathways img").evaluateAll((imgs) =>
      imgs.map((i) => ({ alt: i.alt, width: i.naturalWidth, height: i.naturalHeight })),
    );
    seen.captions = await page.locator("#pathways .caption-label, #pathways figcaption").allInnerTexts();
    await page.screenshot({ path: screenshot, fullPage: true });
    seen.screenshot = screenshot;
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(seen) + "\n");
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + "\n");
  process.exit(1);
});
