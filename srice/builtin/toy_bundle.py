"""Where the trained toy models live: the embedded defaults that make ``srice ask`` answer synthetic
questions out of the box (built by ``srice train-toy``; see ``srice/assets/toy/manifest.json``).

- ``mllm/``: the toy Qwen2-VL (variant ``toy``, served by vLLM like any checkpoint);
- ``yolo.pt``: the shape detector (the embedded ``yolo`` tool, and the detector behind ``sam``);
- ``calib/``: the detector's conformal calibrator and the uncertainty calibration, used by default
  with the ``toy`` variant.

"""

from __future__ import annotations

import os
from pathlib import Path

from srice.errors import InputError

# $SRICE_TOY_DIR points everything at another bundle (e.g. one built with another seed)
TOY_DIR = Path(os.environ.get("SRICE_TOY_DIR") or Path(__file__).resolve().parents[1] / "assets" / "toy")
# The detector predicts at the two scales it trained at (srice.toy.train_yolo): at twice the synthetic
# world's longest side, where a 6 px object spans more than one stride-8 cell (so YOLO's assigner had an
# anchor inside it to learn from), and shrunk to 672 px, where a large object fits its receptive field.
PREDICT_SIZES = (2 * 1344, 672)
# The detector reports boxes down to this confidence; its conformal calibrator (calib/yolo.json) then
# picks the threshold that keeps recall >= 1 - alpha, which it can only do from low-confidence boxes.
DETECTOR_CONF = 0.05


def toy_path(name: str, root: Path = TOY_DIR) -> Path:
    """A file or folder of the trained toy bundle, with a clear error if this checkout lacks it."""
    path = root / name
    if not path.exists():
        raise InputError(f"the trained toy bundle has no {name} ({path}); build it with: srice train-toy")
    return path


def bundle_kinds(root: Path = TOY_DIR) -> tuple[str, ...]:
    """The question kinds a bundle's model was trained on (its manifest's), which benchmarks ask."""
    import json

    manifest = json.loads(toy_path("manifest.json", root).read_text())
    return tuple(manifest["data"]["kinds"])


def has_toy_yolo(root: Path = TOY_DIR) -> bool:
    return (root / "yolo.pt").is_file()


def toy_yolo_options(root: Path = TOY_DIR) -> dict:
    """How the toy detector is run everywhere: calibration, the embedded ``yolo`` tool, benchmarks."""
    return {"weights": str(root / "yolo.pt"), "imgsz": PREDICT_SIZES, "conf": DETECTOR_CONF, "max_det": 50}
