"""Both install modes give the namespaced layout: srice.serving, srice.tools, srice.calibration."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = "import srice, srice.serving, srice.tools, srice.calibration; print(srice.serving.__file__)"


def test_editable_install_imports_from_this_checkout(tmp_path):
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == ROOT / "serving" / "__init__.py"


def test_wheel_and_regular_install(tmp_path):
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    # built from a copy of the checkout's files: a stale build/ folder here must not fill the wheel
    source = tmp_path / "source"
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "wheel", source],
        check=True,
        capture_output=True,
    )
    [wheel] = (tmp_path / "wheel").glob("srice-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "srice/app/cli.py",
        "srice/agent/loop.py",
        "srice/eval/formats/benchmarks.py",
        "srice/synth/world.py",
        "srice/builtin/toy_bundle.py",
        "srice/assets/toy/yolo.pt",
        "srice/serving/openai_http.py",
        "srice/serving/variants.json",
        "srice/tools/__init__.py",
        "srice/calibration/__init__.py",
        "srice/compress/api.py",
    } <= names
    assert not any(n.startswith(("serving/", "tools/", "calibration/", "tests/")) for n in names)
    folders = {"srice": "srice", **{f: f"srice/{f}" for f in ("serving", "tools", "calibration")}}
    sources = {f"{folders[n.split('/')[0]]}/{n.split('/', 1)[1]}" for n in listed if n.endswith(".py")
               and n.split("/")[0] in folders}  # fmt: skip
    assert sources <= names, f"modules missing from the wheel (pyproject packages): {sorted(sources - names)}"
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", target, wheel], check=True, capture_output=True)
    r = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == target / "srice" / "serving" / "__init__.py"
    r = subprocess.run(
        [sys.executable, str(target / "bin" / "srice"), "--help"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0 and "usage: srice" in r.stdout


def test_the_gpu_lock_resolves_to_exactly_its_pins():
    """env/vllm-gpu.lock (what env/setup.sh installs on an NVIDIA machine) still resolves from PyPI
    for this Python and platform, and pip needs nothing beyond its pins: a yanked or conflicting pin
    fails here, on a CPU machine, rather than on a user's GPU machine. Resolved without installing
    (pip --dry-run), from PyPI alone (this machine's local CPU torch wheels are left out)."""
    lock = ROOT / "env" / "vllm-gpu.lock"
    pins = {
        line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
        for line in lock.read_text().splitlines()
        if line and not line.startswith("#")
    }
    env = os.environ | {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_CONSTRAINT": ""}
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
         "-", "-r", str(lock)], capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    resolved = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
                for i in report["install"]}  # fmt: skip
    assert resolved == pins and pins["vllm"] == "0.32.0" and "+" not in pins["torch"]
