"""Both install modes give the namespaced layout: srice.serving, srice.tools, srice.calibration."""

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
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "wheel", ROOT],
        check=True,
        capture_output=True,
    )
    [wheel] = (tmp_path / "wheel").glob("srice-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "srice/cli.py",
        "srice/serving/openai_http.py",
        "srice/serving/variants.json",
        "srice/tools/__init__.py",
        "srice/calibration/__init__.py",
        "srice/compress/api.py",
    } <= names
    assert not any(n.startswith(("serving/", "tools/", "calibration/", "tests/")) for n in names)
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
