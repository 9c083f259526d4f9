"""lmms-eval hooks for a `srice synth` question file: the image, the prompt as harnesses write it
(options as "A. ..." lines, then the usual answer instruction), and exact-match scoring (the letter
for multiple choice). The folder is `srice-synth/` under lmms-eval's working directory, or
$SRICE_SYNTH_DIR."""

import os
from pathlib import Path

from PIL import Image


def _folder() -> Path:
    return Path(os.environ.get("SRICE_SYNTH_DIR", "srice-synth"))


def doc_to_visual(doc):
    return [Image.open(_folder() / doc["image"]).convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    if doc.get("options"):
        lines = [doc["question"], *(f"{'ABCDEFGH'[k]}. {o}" for k, o in enumerate(doc["options"]))]
        return "\n".join(lines) + "\nAnswer with the option's letter from the given choices directly."
    return doc["question"] + "\nAnswer the question using a single word or phrase."


def doc_to_target(doc):
    return doc["answer"]


def process_results(doc, results):
    prediction = results[0].strip()
    answers = [a.strip().lower() for a in doc.get("answers") or [doc["answer"]]]
    return {"exact_match": float(prediction.lower().rstrip(".") in answers)}
