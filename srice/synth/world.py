"""A deterministic synthetic VQA world where small details matter (``srice synth``).

Why it exists: SRICE's tool pathways pay off when the answer hinges on a detail the MLLM cannot
resolve in the full view at its image-token budget (measured on the toy model, README "Training toy
models": it is confidently wrong about tiny objects in the full view and right on zoomed crops).
Real benchmarks mix such questions with easy ones in unknown proportion; here the share of tiny
targets is a knob, and every answer, box and mask is known exactly, so agent, tools and calibrators
can be measured against ground truth.

Output folder:
- ``images/{id}.png``: 672-1344 px scenes of 2-7 shapes (sizes from ~25% of the side down to 6 px),
- ``questions.jsonl``: one question per line (the format ``srice calibrate``/``eval`` read),
- ``annotations.json``: COCO boxes and masks (categories are the shapes), for tool calibration,
- ``scenes.jsonl``: every object of every image, from which every answer can be recomputed,
- ``synth.json``: seed, n, knobs, generator version and the files' sha256.

Determinism: image ``i`` draws from generators seeded by ``(seed, i, stream)`` only, so the same seed
and knobs give identical bytes, and ``n`` and ``2n`` share their first images (only the last image of
the smaller set may carry fewer questions).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL

from srice.errors import InputError
from srice.synth.questions import KINDS, TEXT_KINDS, build_question, plan_questions, record
from srice.synth.render import render, segmentation
from srice.synth.scene import SHAPES, Scene, sample_scene

GENERATOR_VERSION = 1
OUTPUT_FILES = ("questions.jsonl", "scenes.jsonl", "annotations.json", "synth.json")
_IMAGE_NAME = re.compile(r"^s\d+_\d{6,}\.png$")
_PLAN, _LAYOUT, _PIXELS = 0, 1, 2  # independent random streams per image


@dataclass(frozen=True)
class SynthKnobs:
    """What ``srice synth`` can vary. ``kinds``: any subset of ``KINDS``, a comma list, or None (all)."""

    tiny_fraction: float = 0.5  # share of questions whose (smallest) target is tiny
    kinds: tuple[str, ...] = KINDS
    min_side: int = 672
    max_side: int = 1344
    mc_fraction: float = 0.3  # share of multiple-choice questions, when both families are enabled
    # "polygon": polygons for polygonal shapes (RLE for circles), exact under our COCO decoder
    # (srice.calibration.coco); "rle": uncompressed RLE for every object, exact under any decoder,
    # pycocotools included (pycocotools reads polygon vertices as pixel corners, srice.calibration.coco
    # as pixel centres: on a 6 px star the two decodings overlap by IoU ~0.5).
    mask_format: str = "rle"  # uncompressed RLE decodes the same in srice.calibration.coco and pycocotools

    def __post_init__(self) -> None:
        kinds = KINDS if self.kinds is None else self.kinds
        kinds = kinds.split(",") if isinstance(kinds, str) else list(kinds)
        kinds = [str(k).strip() for k in kinds if str(k).strip()]
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise InputError(
                f"unknown question kind(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                f"known: {', '.join(KINDS)}"
            )
        object.__setattr__(self, "kinds", tuple(k for k in KINDS if k in kinds))  # canonical order
        for name in ("tiny_fraction", "mc_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise InputError(f"{name} must be a number between 0 and 1, got {value!r}")
        for name in ("min_side", "max_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 256 <= value <= 4096:
                raise InputError(f"{name} must be an integer from 256 to 4096 px, got {value!r}")
        if self.mask_format not in ("polygon", "rle"):
            raise InputError(f"mask_format must be 'polygon' or 'rle', got {self.mask_format!r}")
        if self.min_side > self.max_side:
            raise InputError(f"min_side ({self.min_side}) is larger than max_side ({self.max_side})")


@dataclass(frozen=True)
class SynthSummary:
    out_dir: Path
    questions: Path
    scenes: Path
    annotations: Path
    manifest: Path
    n_images: int
    n_questions: int
    n_objects: int
    tiny_share: float  # realised share of questions with a tiny target
    by_kind: dict[str, int]
    sha256: str  # of questions.jsonl


def generate(
    out_dir: str | Path,
    *,
    seed: int,
    n: int,
    knobs: SynthKnobs = SynthKnobs(),
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write ``n`` questions (2-4 per image) and their images, scenes, COCO file and manifest.

    ``progress`` is called with the number of questions each image added. ``out_dir`` must be new,
    empty, or an earlier synth output (which is replaced).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise InputError(f"n (the number of questions) must be a positive integer, got {n!r}")
    config = knobs
    out = Path(out_dir)
    _prepare(out)
    with _Writer(out, polygons=config.mask_format == "polygon") as writer:
        index = 0
        while writer.n_questions < n:
            added = _one_image(writer, seed, index, n - writer.n_questions, config)
            if progress and added:
                progress(added)
            index += 1
            if index > 2 * n + 10:  # every scene admits questions; reaching this is a bug
                raise RuntimeError("synth produced too few questions per image")
        return writer.finish(seed, n, config)


def _one_image(writer: _Writer, seed: int, index: int, budget: int, config: SynthKnobs) -> int:
    scene, image, records = make_image(seed, index, config, budget)
    writer.add(scene, image, records)
    return len(records)


def make_image(
    seed: int, index: int, config: SynthKnobs = SynthKnobs(), budget: int | None = None
) -> tuple[Scene, PIL.Image.Image, list[dict]]:
    """Image ``index`` of set ``seed``: plan its questions, sample a scene that can answer them,
    render it, ask them. In memory, so training (``srice.toy.data``) draws from the very same world."""
    plan_rng, layout_rng, pixel_rng = (
        np.random.default_rng([seed, index, s]) for s in (_PLAN, _LAYOUT, _PIXELS)
    )
    plans = plan_questions(plan_rng, config.kinds, config.tiny_fraction, config.mc_fraction)
    scene = sample_scene(
        layout_rng,
        f"s{seed}_{index:06d}",
        min_side=config.min_side,
        max_side=config.max_side,
        need_tiny_text=sum(p.kind in TEXT_KINDS and p.tiny for p in plans),
        need_text=sum(p.kind in TEXT_KINDS and not p.tiny for p in plans),
        min_tiny=sum(p.tiny for p in plans),
        min_big=sum(not p.tiny for p in plans) + any(p.kind == "leftright" and not p.tiny for p in plans),
    )
    used: set[str] = set()
    records = []
    for j, plan in enumerate(plans):
        built = build_question(plan, scene, plan_rng, config.kinds, used)
        if built is not None:
            used.add(built.candidate.question)
            records.append(record(built, f"{scene.id}_q{j}", f"images/{scene.id}.png", scene))
    if budget is not None:
        records = records[:budget]
    return scene, render(scene, pixel_rng), records


class _Writer:
    """Streams questions and scenes to disk and collects the COCO file and the image hashes.

    PNG encoding is most of the run time and releases the GIL, so one background thread encodes
    while the main thread samples and renders the next scene; hashes are collected in image order.
    """

    MAX_PENDING = 4  # rendered images waiting for the encoder (bounds memory)

    def __init__(self, out: Path, *, polygons: bool) -> None:
        self.out = out
        self.polygons = polygons
        (out / "images").mkdir(parents=True, exist_ok=True)
        self.encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-png")
        self.pending: deque[tuple[str, Future[str]]] = deque()
        self.questions = open(out / "questions.jsonl", "w", encoding="utf-8", newline="\n")
        self.scenes = open(out / "scenes.jsonl", "w", encoding="utf-8", newline="\n")
        self.coco_images: list[dict] = []
        self.coco_annotations: list[dict] = []
        self.image_hashes = hashlib.sha256()
        self.n_questions = 0
        self.n_objects = 0
        self.kinds: Counter[str] = Counter()
        self.n_tiny = 0

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.questions.close()
        self.scenes.close()
        self.encoder.shutdown(wait=True, cancel_futures=True)

    def add(self, scene: Scene, image, records: list[dict]) -> None:
        name = f"{scene.id}.png"
        self.pending.append((name, self.encoder.submit(_write_png, image, self.out / "images" / name)))
        while len(self.pending) > self.MAX_PENDING:
            self._collect_one()
        self.scenes.write(_dumps(scene.to_json(f"images/{name}")) + "\n")
        for r in records:
            self.questions.write(_dumps(r) + "\n")
            self.kinds[r["kind"]] += 1
            self.n_tiny += r["meta"]["target_size"] == "tiny"
        self.n_questions += len(records)
        coco_id = len(self.coco_images) + 1
        self.coco_images.append(
            {
                "id": coco_id,
                "file_name": name,
                "width": scene.width,
                "height": scene.height,
                "scene_id": scene.id,
            }
        )
        for o in scene.objects:
            x1, y1, x2, y2 = o.box
            self.coco_annotations.append(
                {
                    "id": len(self.coco_annotations) + 1,
                    "image_id": coco_id,
                    "category_id": SHAPES.index(o.shape) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": int(o.mask.sum()),
                    "iscrowd": 0,
                    "segmentation": segmentation(o, scene.width, scene.height, polygon=self.polygons),
                    "attributes": {
                        "object_id": o.id,
                        "colour": o.colour,
                        "texture": o.texture,
                        "text": o.text,
                        "size": o.size,
                    },
                }
            )
        self.n_objects += len(scene.objects)

    def _collect_one(self) -> None:
        name, digest = self.pending.popleft()
        self.image_hashes.update(f"{name}\0{digest.result()}\n".encode())

    def finish(self, seed: int, n: int, config: SynthKnobs) -> SynthSummary:
        while self.pending:
            self._collect_one()
        self.questions.close()
        self.scenes.close()
        coco = {
            "info": {"description": "srice synthetic VQA scenes", "version": GENERATOR_VERSION, "seed": seed},
            "images": self.coco_images,
            "annotations": self.coco_annotations,
            "categories": [{"id": i + 1, "name": s, "supercategory": "shape"} for i, s in enumerate(SHAPES)],
        }
        (self.out / "annotations.json").write_text(_dumps(coco), encoding="utf-8")
        digests = {name: _sha256(self.out / name) for name in OUTPUT_FILES[:3]}
        digests["images"] = self.image_hashes.hexdigest()
        by_kind = {k: self.kinds[k] for k in KINDS if self.kinds[k]}
        manifest = {
            "generator": "srice.synth",
            "version": GENERATOR_VERSION,
            "seed": seed,
            "n": n,
            "knobs": {**dataclasses.asdict(config), "kinds": list(config.kinds)},
            "counts": {
                "images": len(self.coco_images),
                "questions": self.n_questions,
                "objects": self.n_objects,
                "tiny_targets": self.n_tiny,
                "by_kind": by_kind,
            },
            "sha256": digests,
            "libraries": {"numpy": np.__version__, "pillow": PIL.__version__},  # both shape the bytes
        }
        (self.out / "synth.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return SynthSummary(
            out_dir=self.out,
            questions=self.out / "questions.jsonl",
            scenes=self.out / "scenes.jsonl",
            annotations=self.out / "annotations.json",
            manifest=self.out / "synth.json",
            n_images=len(self.coco_images),
            n_questions=self.n_questions,
            n_objects=self.n_objects,
            tiny_share=self.n_tiny / self.n_questions,
            by_kind=by_kind,
            sha256=digests["questions.jsonl"],
        )


def _prepare(out: Path) -> None:
    """Refuse to write into a folder holding anything but an earlier synth output; clear that one,
    so no stale image of a bigger earlier run survives next to the new files."""
    if out.exists() and not out.is_dir():
        raise InputError(f"output path {out} exists and is not a folder")
    if not out.exists():
        return
    entries = list(out.iterdir())
    images = out / "images"
    foreign = [e.name for e in entries if e.name not in OUTPUT_FILES and e != images]
    if images.exists():
        foreign += [f"images/{e.name}" for e in images.iterdir() if not _IMAGE_NAME.match(e.name)]
    if foreign:
        raise InputError(
            f"output folder {out} holds files synth did not write ({', '.join(sorted(foreign)[:3])}); "
            "choose a new or empty folder"
        )
    for e in entries:
        if e.is_file():
            e.unlink()
    if images.exists():
        for e in images.iterdir():
            e.unlink()


def _write_png(image, path: Path) -> str:
    """Encode with fixed parameters (identical bytes for identical pixels), write, return the sha256."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    data = buffer.getvalue()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
