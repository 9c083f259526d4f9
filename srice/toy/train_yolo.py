"""Training the embedded YOLO detector on the synthetic world (classes: the six shapes).

Why tiles, and why 2x: the detector exists to find 6-12 px objects in 672-1344 px images, which
vanish if the image is shrunk to a training size. So it trains on 160 px tiles cut at native scale
(each about an object, half of them tiny ones), seen at 2x, and predicts on the whole image at 2x
(``srice.toy.PREDICT_SIZES``): a convolutional detector sees the same pixel scale either way. The 2x
matters because YOLO's task-aligned assigner only learns from anchor points inside a ground-truth box,
and stride-8 anchors often miss a 6 px box entirely at 1x (measured: 0-25% recall on tiny objects
after the same training time at 1x).

Large objects (up to 336 px native, 672 px at 2x) fit no such tile, so a share of the tiles is cut
from the image shrunk to ``coarse_side`` (its longest side), the second size the detector predicts
at: there a large object is 40-336 px and a tile holds it. Without them the detector found no large
target in its best box (0 of 14, seed 0).
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from srice.synth import SynthKnobs, make_image
from srice.synth.scene import SHAPES

TRAIN_SEED_OFFSET = 3000  # detector training images: synth seed 3000 + model seed


@dataclass(frozen=True)
class YoloConfig:
    seed: int = 0
    images: int = 400  # synthetic images to cut tiles from
    tiles_per_image: int = 3  # native-scale tiles, seen at 2x
    coarse_tiles_per_image: int = 1  # tiles of the image shrunk to coarse_side, seen as they are
    tile: int = 160
    upscale: int = 2  # tiles are seen at 2x, as images are at prediction (see the module docstring)
    coarse_side: int = 672
    epochs: int = 10
    lr: float = 0.002
    warmup_epochs: float = 1.0  # ultralytics' default 3 would spend most of a short run warming up
    batch: int = 16
    width: float = 0.125  # yolo11n's channel multiplier is 0.25; flat shapes need less, CPU time is scarce
    depth: float = 0.33
    device: str = "cpu"  # cpu or cuda:N (train-toy --device)
    min_visible: float = 0.6  # an object cut by the tile edge is labelled if this share of it shows


def cut_tiles(config: YoloConfig, out: Path, indices: range) -> dict:
    """Write ``images/`` and ``labels/`` (YOLO txt: class cx cy w h, normalised) of the tiles of
    synthetic images ``indices``."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    knobs = SynthKnobs(kinds=("colour", "exists"))
    n_tiles = n_boxes = 0
    coarse_tile = config.tile * config.upscale  # what the network sees of every tile
    for index in indices:
        scene, image, _ = make_image(config.seed + TRAIN_SEED_OFFSET, index, knobs)
        rng = np.random.default_rng([config.seed, index, 7])
        boxes = np.array([o.box for o in scene.objects], dtype=float)
        classes = np.array([SHAPES.index(o.shape) for o in scene.objects])
        sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        is_tiny = np.array([o.size == "tiny" for o in scene.objects])
        tiny, big = list(np.flatnonzero(is_tiny)), list(np.flatnonzero(~is_tiny))
        fits = list(np.flatnonzero(sides < config.tile))
        everything = np.ones(len(boxes), dtype=bool)
        tiles = [
            (image, boxes, everything, config.tile, tiny if t % 2 == 0 else fits)
            for t in range(config.tiles_per_image)
        ]
        if config.coarse_tiles_per_image:
            factor = config.coarse_side / max(image.size)
            small = image.resize((round(image.width * factor), round(image.height * factor)), Image.BILINEAR)
            # tiny objects are 3-12 px specks here: the native scale finds them, this one must not try
            tiles += [(small, boxes * factor, ~is_tiny, coarse_tile, big)] * config.coarse_tiles_per_image
        # every tile is about an object (half the native ones tiny ones): empty background teaches little
        for t, (source, source_boxes, labelled, side, around) in enumerate(tiles):
            x0, y0 = _tile_origin(rng, source.width, source.height, side, source_boxes, around)
            lines = _labels(source_boxes[labelled], classes[labelled], x0, y0, side, config.min_visible)
            name = f"{scene.id}_t{t}"
            source.crop((x0, y0, x0 + side, y0 + side)).save(out / "images" / f"{name}.png")
            (out / "labels" / f"{name}.txt").write_text("".join(lines))
            n_tiles += 1
            n_boxes += len(lines)
    return {"tiles": n_tiles, "boxes": n_boxes}


def _tile_origin(rng, width, height, tile, boxes, around) -> tuple[int, int]:
    if around:
        x1, y1, x2, y2 = boxes[around[int(rng.integers(len(around)))]]
        cx, cy = (x1 + x2) / 2 + rng.uniform(-0.4, 0.4) * tile, (y1 + y2) / 2 + rng.uniform(-0.4, 0.4) * tile
        x0, y0 = int(cx - tile / 2), int(cy - tile / 2)
    else:
        x0, y0 = int(rng.integers(0, width - tile + 1)), int(rng.integers(0, height - tile + 1))
    return int(np.clip(x0, 0, width - tile)), int(np.clip(y0, 0, height - tile))


def _labels(boxes, classes, x0, y0, tile, min_visible) -> list[str]:
    lines = []
    for (x1, y1, x2, y2), c in zip(boxes, classes):
        cx1, cy1 = max(x1 - x0, 0), max(y1 - y0, 0)
        cx2, cy2 = min(x2 - x0, tile), min(y2 - y0, tile)
        if cx2 <= cx1 or cy2 <= cy1:
            continue
        if (cx2 - cx1) * (cy2 - cy1) < min_visible * (x2 - x1) * (y2 - y1):
            continue
        cx, cy, w, h = (cx1 + cx2) / 2 / tile, (cy1 + cy2) / 2 / tile, (cx2 - cx1) / tile, (cy2 - cy1) / tile
        lines.append(f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return lines


def _model_yaml(config: YoloConfig, folder: Path, ultralytics) -> Path:
    """YOLO11 at a smaller scale than its smallest (n), for the six shape classes."""
    import yaml

    source = Path(ultralytics.__file__).parent / "cfg" / "models" / "11" / "yolo11.yaml"
    spec = yaml.safe_load(source.read_text())
    spec["nc"] = len(SHAPES)
    spec["scales"] = {"n": [config.depth, config.width, 256]}
    path = folder / "yolo11n-synth.yaml"  # ultralytics reads the scale letter from the name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def train(
    out_file: str | Path, config: YoloConfig = YoloConfig(), log: Callable[[str], None] = print
) -> dict:
    """Cut tiles, train YOLO from its config (no pretrained weights: nothing can be downloaded) and
    write the final weights to ``out_file``; returns the training report."""
    import tempfile

    from srice.tools.yolo import _kept_global_state, import_ultralytics

    began = time.perf_counter()
    out_file = Path(out_file)
    work = Path(tempfile.mkdtemp(prefix="srice-yolo-"))
    try:
        counts = cut_tiles(config, work / "train", range(config.images))
        cut_tiles(config, work / "val", range(10**6, 10**6 + 10))  # ultralytics insists on a val set
        log(f"YOLO: {counts['tiles']} tiles, {counts['boxes']} boxes in {time.perf_counter() - began:.0f} s")
        data = work / "data.yaml"
        data.write_text(
            json.dumps(
                {"path": str(work), "train": "train/images", "val": "val/images", "names": list(SHAPES)}
            )
        )
        ultralytics = import_ultralytics()
        trained = time.perf_counter()
        with _kept_global_state(), warnings.catch_warnings():
            # with ray installed, ultralytics' Ray Tune callback asks Ray for a trial each epoch and
            # warns that there is none: this training is no Ray Tune trial
            warnings.filterwarnings("ignore", message=".*get_trial_id", category=UserWarning)
            model = ultralytics.YOLO(str(_model_yaml(config, work, ultralytics)))
            model.train(
                data=str(data),
                epochs=config.epochs,
                imgsz=config.tile * config.upscale,
                optimizer="AdamW",
                lr0=config.lr,
                batch=config.batch,
                workers=1,
                device=config.device,
                seed=config.seed,
                deterministic=True,
                project=str(work / "runs"),
                name="train",
                val=False,
                plots=False,
                amp=False,
                warmup_epochs=config.warmup_epochs,
                cache="ram",  # tiles are small; decoding PNGs every epoch would cost more than training
                scale=0.2,  # keep tiny objects tiny: the default 0.5 would shrink them to specks
                flipud=0.0,
                mosaic=1.0,
                close_mosaic=2,
                verbose=False,
            )
        train_seconds = time.perf_counter() - trained
        weights = work / "runs" / "train" / "weights" / "last.pt"
        out_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights, out_file)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "config": asdict(config),
        **counts,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - began, 1),
        "bytes": out_file.stat().st_size,
    }
