"""Detector weights a user names are data, not code: crafted weights do not run their payload."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import run_srice, scene

GOOD = "What colour is the square?"


def _craft_pt(path: Path, marker: Path) -> None:
    code = ("import os, torch, sys\n"
            "class Payload:\n"
            "    def __reduce__(self):\n"
            f"        return (os.system, ('touch {marker}',))\n"
            f"torch.save({{'model': Payload()}}, {str(path)!r})\n")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)


def test_crafted_detector_weights_do_not_run_their_payload(tmp_path):
    """A .pt is a pickle and ultralytics evaluates a model YAML's activation: both are loaded with
    its safe loader unless --trust-weights, and refused in one line, before any work."""
    import yaml

    marker = tmp_path / "PAYLOAD-RAN"
    _craft_pt(tmp_path / "evil.pt", marker)
    import ultralytics

    spec = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models/11/yolo11.yaml").read_text())
    spec["activation"] = f"__import__('os').system('touch {marker}') or nn.SiLU()"
    (tmp_path / "evil.yaml").write_text(yaml.safe_dump(spec))
    picture = tmp_path / "p.png"
    scene().save(picture)
    for weights in ("evil.pt", "evil.yaml"):
        named = f"yolo={tmp_path / weights}"
        r = run_srice("ask", "--image", str(picture), "--question", GOOD, "--tools", "yolo", "--backend",
                      "transformers", "--variant", "tiny", "--tool-weights", named)  # fmt: skip
        assert r.returncode == 1, r.stderr
        [line] = [x for x in r.stderr.splitlines() if x.startswith("srice: error:")]
        assert "cannot load YOLO weights" in line and "--trust-weights" in line
        assert not marker.exists(), f"the payload of {weights} ran"
