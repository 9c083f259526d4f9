"""``YoloTool``: ultralytics detectors (and -seg models) behind the tool interface.

Weights: a ``.pt`` file, an ultralytics model name (``"yolo11n.pt"``: ultralytics downloads it on
first use, the one way this tool reaches the network, and only when named), or a model yaml
(``"yolo11n.yaml"``: built offline with random weights). ``weights=None`` means ``yolo11n.pt`` if it
is already on disk (working directory or ultralytics' weights folder) and a ToolError otherwise:
nothing is downloaded unless named.

Targets: closed-vocabulary models match the phrases to their class names with
``srice.tools.vocab.match_targets`` (case, plurals, a small synonym table); only matched classes are
predicted (passed to ultralytics as ``classes=``, so NMS and ``max_det`` only see them) and a target
that names no class selects nothing. YOLO-World / YOLOE checkpoints are open-vocabulary: the
phrases become the model's classes through ``set_classes`` (which needs their text encoder), and
the labels are the phrases. Empty targets: everything the model knows (for open-vocabulary
models, the vocabulary they were saved with, set back if a targeted call changed it).

Scales: ``imgsz`` may list several predict sizes (``(2688, 672)``): the image is predicted at each
and the boxes merged by per-class NMS at ``iou``. A detector trained at one pixel scale finds objects
of that scale; tiny and large objects in one image need two (the toy shape detector, ``srice.toy``).

Batching: one ``predict`` per image size (ultralytics letterboxes a mixed-size batch to a square,
which would change results against single calls). Images in one call whose targets select different
classes are predicted with the union of those classes and filtered per image afterwards; NMS is
per class, so this equals per-image calls (up to ultralytics' 30 000-candidate cap). An image given
more than once (the same object, several questions on it) is predicted once.

Ultralytics changes process-wide state when imported and when it picks a device
(``OMP_NUM_THREADS``, torch's intra-op threads, OpenCV's threads, numpy's print options): this
module restores all of them after every ultralytics call.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path

import numpy as np
from PIL import Image

from srice.devices import check_device, resolve_device
from srice.errors import ToolError, require
from srice.tools.base import BaseTool, kept_torch_threads
from srice.tools.regions import Regions
from srice.tools.vocab import match_targets

DEFAULT_WEIGHTS = "yolo11n.pt"
_MAX_CANDIDATES = 30_000  # ultralytics' own cap on boxes entering NMS
_FONTS = ("Arial.ttf", "Arial.Unicode.ttf")


def _prepare_offline_env() -> None:
    """Settings ultralytics reads at import: offline, no auto-install, config (and fonts) in srice's cache."""
    from srice.paths import cache_dir

    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cache_dir() / "ultralytics"))
    fonts_dir = Path(os.environ["YOLO_CONFIG_DIR"]).expanduser() / "Ultralytics"
    if all((fonts_dir / f).exists() for f in _FONTS):
        return
    # ultralytics downloads Arial.ttf the first time it draws; a local TTF stops that (never fatal)
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return
    source = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    try:
        fonts_dir.mkdir(parents=True, exist_ok=True)
        for name in _FONTS:
            if source.exists() and not (fonts_dir / name).exists():
                shutil.copyfile(source, fonts_dir / name)
    except OSError:
        pass


@contextmanager
def _kept_global_state():
    """Undo ultralytics' process-wide side effects (threads, OMP env, print options, and its patch of
    PIL's ``Image.open``, which tries to import pi-heif on any unreadable file and so turns a corrupt
    image into a ModuleNotFoundError everywhere in the process)."""
    from PIL import Image

    pil_open = Image.open
    omp = os.environ.get("OMP_NUM_THREADS")
    printopts = np.get_printoptions()
    cv2 = sys.modules.get("cv2")
    cv2_threads = cv2.getNumThreads() if cv2 is not None else None
    try:
        with kept_torch_threads():
            yield
    finally:
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp
        np.set_printoptions(**printopts)
        Image.open = pil_open
        cv2 = sys.modules.get("cv2")
        if cv2 is not None and cv2_threads is not None and cv2.getNumThreads() != cv2_threads:
            cv2.setNumThreads(cv2_threads)


_LOADING = threading.Lock()
SAFE_HINT = (
    " (loaded safely: a checkpoint that needs more than ultralytics' own classes, or a model YAML with "
    "code in it, is refused; --trust-weights loads it, running its code)"
)


@contextmanager
def _safe_loading(safe: bool):
    """Load weights with ultralytics' safe-load switch on (``weights_only`` unpickling against an
    allow-list of its own model classes, and model YAML built without ``eval``) unless the weights
    are trusted: an ordinary .pt is a pickle, and unpickling a crafted one runs its code."""
    tasks = import_module("ultralytics.nn.tasks")
    if safe and not tasks._SafeLoad.SUPPORTED:
        raise ToolError(
            "safe loading of YOLO weights needs torch >= 2.6; pass --trust-weights to load them anyway"
        )
    with _LOADING:
        before = tasks.SAFE_LOAD
        tasks.SAFE_LOAD = safe
        try:
            yield
        finally:
            tasks.SAFE_LOAD = before


def import_ultralytics():
    """``ultralytics``, imported offline and without leaving its global side effects behind."""
    if "ultralytics" in sys.modules:
        return sys.modules["ultralytics"]
    _prepare_offline_env()
    with _kept_global_state():
        return require("ultralytics", "ultralytics", "the yolo tool", ToolError)


class YoloTool(BaseTool):
    """Ultralytics YOLO detection/segmentation; see the module docstring for weights and targets."""

    name = "yolo"

    def __init__(
        self,
        *,
        weights: str | os.PathLike | None = None,
        conf: float = 0.25,
        iou: float = 0.7,
        imgsz: int | Sequence[int] = 640,
        max_det: int = 300,
        device: str = "auto",
        trust_weights: bool = False,
    ) -> None:
        if not 0.0 <= conf <= 1.0 or not 0.0 <= iou <= 1.0:
            raise ValueError(f"conf and iou must lie in [0, 1], got conf={conf}, iou={iou}")
        self.weights = None if weights is None else str(weights)
        sizes = (imgsz,) if isinstance(imgsz, int | float | str) else tuple(imgsz)
        if not sizes or any(int(v) < 32 for v in sizes):
            raise ValueError(f"imgsz must be one or more sizes of at least 32 px, got {imgsz!r}")
        self.sizes = tuple(int(v) for v in sizes)
        self.conf, self.iou, self.max_det = float(conf), float(iou), int(max_det)
        self.device = check_device(device)
        self.trust_weights = bool(trust_weights)  # unpickle and eval the weights' code (their author's)
        self._model = None
        self._own_classes: tuple[str, ...] = ()  # open-vocabulary models: the vocabulary they came with
        self._classes_set: tuple[str, ...] = ()  # ... and the phrases they are set to now

    # -- loading ---------------------------------------------------------------------------------
    def _resolve_weights(self) -> str:
        if self.weights is None:
            ultralytics = import_ultralytics()
            weights_dir = Path(ultralytics.utils.SETTINGS.get("weights_dir", "weights"))
            for candidate in (Path(DEFAULT_WEIGHTS), weights_dir / DEFAULT_WEIGHTS):
                if candidate.is_file():
                    return str(candidate)
            raise ToolError(
                f"no YOLO weights given and {DEFAULT_WEIGHTS} is not on disk: pass weights= a .pt file, "
                f"a model yaml, or weights='{DEFAULT_WEIGHTS}' to let ultralytics download it"
            )
        path = Path(self.weights).expanduser()
        looks_like_path = path.is_absolute() or len(path.parts) > 1
        if looks_like_path and not path.exists():
            raise ToolError(f"YOLO weights file not found: {path}")
        if path.exists() and path.is_dir():
            raise ToolError(f"YOLO weights must be a .pt file or a model yaml, got a folder: {path}")
        return str(path) if path.exists() else self.weights

    @property
    def model(self):
        """The ultralytics model, loaded on first use."""
        if self._model is None:
            ultralytics = import_ultralytics()
            weights = self._resolve_weights()
            with _kept_global_state(), _safe_loading(not self.trust_weights):
                try:
                    self._model = ultralytics.YOLO(weights)
                except Exception as e:  # corrupt pickle, wrong format, failed download: all the user's file
                    hint = "" if self.trust_weights else SAFE_HINT
                    raise ToolError(
                        f"cannot load YOLO weights {weights!r}: {type(e).__name__}: {e}{hint}"
                    ) from None
            if self._model.task not in ("detect", "segment"):
                task, self._model = self._model.task, None
                raise ToolError(
                    f"YOLO weights {weights!r} are a {task} model; the yolo tool needs detect or segment"
                )
            names = self._model.names
            names = list(names.values()) if isinstance(names, dict) else list(names)
            self._own_classes = self._classes_set = tuple(str(n) for n in names)
        return self._model

    def load(self) -> None:
        """Load the weights now (a file the user named fails before any work, not on the first image)."""
        self.model  # noqa: B018

    @property
    def open_vocabulary(self) -> bool:
        return type(self.model).__name__ in ("YOLOWorld", "YOLOE")

    @property
    def class_names(self) -> dict[int, str]:
        names = self.model.names
        return dict(names) if isinstance(names, dict) else dict(enumerate(names))

    # -- inference -------------------------------------------------------------------------------
    def _predict(self, images: list[Image.Image], classes: list[int] | None, max_det: int) -> list[list]:
        """Per image, ultralytics' result at each of ``self.sizes``."""
        per_size = [self._predict_at(size, images, classes, max_det) for size in self.sizes]
        return [list(preds) for preds in zip(*per_size)]

    def _predict_at(
        self, size: int, images: list[Image.Image], classes: list[int] | None, max_det: int
    ) -> list:
        with _kept_global_state():
            try:
                return self.model.predict(
                    list(images),
                    conf=self.conf,
                    iou=self.iou,
                    imgsz=size,
                    max_det=max_det,
                    device=resolve_device(self.device),
                    classes=classes,
                    retina_masks=True,  # masks at the original image size
                    verbose=False,
                    save=False,
                )
            except (RuntimeError, ValueError, AssertionError, OSError) as e:
                raise ToolError(f"YOLO inference failed: {type(e).__name__}: {e}") from None

    def _set_classes(self, phrases: tuple[str, ...]) -> None:
        if phrases == self._classes_set:
            return
        with _kept_global_state():
            try:
                self.model.set_classes(list(phrases))
            except Exception as e:  # the text encoder is a separate download these models need
                raise ToolError(
                    f"cannot set open-vocabulary classes on {self.weights!r} (its text encoder may be "
                    f"missing offline): {type(e).__name__}: {e}"
                ) from None
        self._classes_set = phrases

    def _run(self, images: list[Image.Image], targets: list[tuple[str, ...]]) -> list[Regions]:
        segment = self.model.task == "segment"
        results: list[Regions | None] = [None] * len(images)
        if self.open_vocabulary:
            groups: dict[tuple, list[int]] = {}
            for i, t in enumerate(targets):
                groups.setdefault((t, images[i].size), []).append(i)
            for (phrases, _), idx in groups.items():
                self._set_classes(phrases or self._own_classes)
                preds = self._predict([images[i] for i in idx], None, self.max_det)
                for i, pred in zip(idx, preds):
                    meta = {"weights": self.weights, "targets": list(phrases), "open_vocabulary": True}
                    results[i] = self._merged(pred, images[i], None, segment, meta)
            return results  # type: ignore[return-value]

        names = self.class_names
        wanted: list[tuple[int, ...] | None] = []
        metas = []
        for t in targets:
            if not t:
                wanted.append(None)
                metas.append({"weights": self.weights, "targets": []})
                continue
            match = match_targets(t, names)
            wanted.append(match.class_ids)
            metas.append(
                {
                    "weights": self.weights,
                    "targets": list(t),
                    "classes": {k: [names[c] for c in v] for k, v in match.classes.items()},
                    "unmatched_targets": list(match.unmatched),
                }
            )
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, w in enumerate(wanted):
            if w is None or w:  # a target list that names no class needs no inference
                by_size.setdefault(images[i].size, []).append(i)
        for idx in by_size.values():
            sets = {wanted[i] for i in idx}
            if len(sets) == 1:
                (only,) = sets
                classes, max_det = (None if only is None else list(only)), self.max_det
            else:  # mixed targets in one batch: predict the union, filter per image, then cap
                classes = None if None in sets else sorted({c for w in sets for c in w})
                max_det = max(self.max_det, _MAX_CANDIDATES)
            distinct: dict[int, int] = {}  # an image object given twice is predicted once
            for i in idx:
                distinct.setdefault(id(images[i]), i)
            preds = self._predict([images[k] for k in distinct.values()], classes, max_det)
            by_image = dict(zip(distinct, preds))
            for i in idx:
                results[i] = self._merged(by_image[id(images[i])], images[i], wanted[i], segment, metas[i])
        for i, r in enumerate(results):
            if r is None:  # no target named a class this model knows
                results[i] = Regions.empty(images[i].size, self.name, with_masks=segment).replace(
                    meta=metas[i]
                )
        return results  # type: ignore[return-value]

    def _merged(self, preds: list, image: Image.Image, keep_ids, segment: bool, meta: dict) -> Regions:
        """One image's regions over all predict sizes: per-class NMS across sizes, best first."""
        parts = [self._to_regions(pred, image, keep_ids, segment, meta) for pred in preds]
        if len(parts) == 1:
            return parts[0]
        import torch
        import torchvision

        boxes = np.concatenate([p.boxes for p in parts])
        scores = np.concatenate([p.scores for p in parts])
        labels = tuple(label for p in parts for label in p.labels)
        names = sorted(set(labels))
        groups = torch.tensor([names.index(label) for label in labels], dtype=torch.int64)
        keep = torchvision.ops.batched_nms(
            torch.from_numpy(boxes), torch.from_numpy(scores), groups, self.iou
        )
        keep = keep.numpy()[: self.max_det]  # batched_nms returns the kept boxes best first
        masks = None if not segment else np.concatenate([p.masks for p in parts])[keep]
        return Regions(
            boxes[keep], scores[keep], tuple(labels[k] for k in keep), image.size, self.name, masks, meta
        )

    def _to_regions(self, pred, image: Image.Image, keep_ids, segment: bool, meta: dict) -> Regions:
        width, height = image.size
        names = pred.names if isinstance(pred.names, dict) else dict(enumerate(pred.names))
        boxes = pred.boxes.xyxy.detach().cpu().numpy().astype(np.float64)
        scores = pred.boxes.conf.detach().cpu().numpy().astype(np.float64)
        cls = pred.boxes.cls.detach().cpu().numpy().astype(np.int64)
        masks = None
        if segment:
            if pred.masks is not None and len(boxes):
                masks = pred.masks.data.detach().cpu().numpy() > 0.5
                if masks.shape[1:] != (height, width):  # retina masks should already be full size
                    masks = np.stack(
                        [
                            np.asarray(Image.fromarray(m).resize((width, height), Image.Resampling.NEAREST))
                            for m in masks
                        ]
                    )
            else:
                masks = np.zeros((len(boxes), height, width), dtype=bool)
        labels = tuple(str(names[int(c)]) for c in cls)
        regions = Regions(boxes, scores, labels, (width, height), self.name, masks, meta).clipped()
        if keep_ids is not None:
            regions = regions.select(np.isin(cls, np.asarray(keep_ids, dtype=np.int64)))
        if len(regions) > self.max_det:  # ultralytics returns detections best first
            regions = regions.select(np.arange(self.max_det))
        return regions
