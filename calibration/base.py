"""The calibrators' shared base: the MAPIE-style verbs, the data hash, and loading any calibrator file.

A calibrator is configured by its constructor, fitted by ``conformalize(examples)`` (a sequence of
:class:`~srice.calibration.matching.Example`), and used by ``apply(regions)``; ``save``/``load``
keep it as one JSON object (``srice.calibration.file_format``), sized by ``srice.calibration.conformal``.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from srice.errors import CalibrationError
from srice.tools.regions import Regions

from .conformal import check_alpha
from .file_format import (
    RECREATE,
    calibration_file,
    check_header,
    read_file,
    refusal,
    verify_checksum,
    write_calibration,
)
from .matching import Example

# method name -> "module:attr", imported when looked up (the project's registry convention).
METHODS: dict[str, str] = {
    "threshold": "srice.calibration.threshold:ThresholdCalibrator",
    "box_margins": "srice.calibration.margins:BoxMarginCalibrator",
    "mask_dilation": "srice.calibration.masks:MaskCalibrator",
    "sequential": "srice.calibration.sequential:SequentialCalibrator",
}


def check_examples(examples: Sequence[Example], calibrator: str) -> list[Example]:
    """The examples as a list, each checked to be an :class:`Example`."""
    if isinstance(examples, Example):
        examples = [examples]
    try:
        items = list(examples)
    except TypeError:
        raise CalibrationError(
            f"{calibrator} needs a sequence of Example(pred, truth); got {type(examples).__name__}."
        ) from None
    for i, item in enumerate(items):
        if not isinstance(item, Example):
            raise CalibrationError(
                f"{calibrator} needs a sequence of Example(pred, truth) but item {i} is "
                f"{type(item).__name__}; wrap each image's Regions and GroundTruth in an Example."
            )
    return items


def data_hash(examples: Sequence[Example]) -> str:
    """A stable sha256 of the calibration data's numbers (boxes, scores, labels, sizes, masks).

    Stable across runs, processes and platforms: arrays are hashed as little-endian float64 (masks as
    packed bits) together with every example's counts and sizes, strings as length-prefixed UTF-8.
    The order of the examples counts (the sequential calibrator's split depends on it).
    """
    h = hashlib.sha256(b"srice.calibration.data/v1")
    h.update(b"E%d:" % len(examples))
    if not examples:
        return "sha256:" + h.hexdigest()

    def arrays(parts: list[np.ndarray], dtype: str) -> None:
        h.update(np.ascontiguousarray(np.concatenate(parts), dtype=dtype).tobytes())

    def strings(groups: list[tuple[str, ...]]) -> None:
        data = [s.encode("utf-8") for group in groups for s in group]
        h.update(np.array([len(d) for d in data], dtype="<i8").tobytes())
        h.update(b"".join(data))

    def masks(items: list[np.ndarray | None]) -> None:
        h.update(bytes(m is not None for m in items))
        present = [m.reshape(-1) for m in items if m is not None and m.size]
        if present:
            h.update(np.packbits(np.concatenate(present)).tobytes())

    # per example: image size, number of predictions, number of true objects, mask shapes
    header = np.array([(*ex.pred.image_size, len(ex.pred), len(ex.truth)) for ex in examples], dtype="<i8")
    h.update(header.tobytes())
    preds = [ex.pred for ex in examples]
    truths = [ex.truth for ex in examples]
    arrays([p.boxes.reshape(-1) for p in preds], "<f8")
    arrays([p.scores for p in preds], "<f8")
    strings([p.labels for p in preds])
    masks([p.masks for p in preds])
    arrays([t.boxes.reshape(-1) for t in truths], "<f8")
    strings([t.labels for t in truths])
    masks([t.masks for t in truths])
    return "sha256:" + h.hexdigest()


class Calibrator:
    """Base of every calibrator: ``conformalize`` / ``apply`` / ``evaluate`` / ``save`` / ``load``.

    Subclasses set ``method`` and ``config_keys`` (the constructor arguments besides alpha stored in
    ``params``) and implement ``_conformalize(examples) -> (n, fitted)``, ``_restore(fitted)`` (set
    the attributes ``_apply`` uses from the JSON-ready ``fitted`` dict: one path for a fresh fit and
    for a loaded file, so both apply identically), ``_apply(regions)`` and ``_evaluate(examples)``.
    """

    method: ClassVar[str] = ""
    config_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = check_alpha(alpha)
        self._n: int | None = None
        self._hash: str | None = None
        self._fitted: dict | None = None

    # --- state -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def is_conformalized(self) -> bool:
        return self._fitted is not None

    def config(self) -> dict:
        """The constructor settings besides alpha, JSON-ready."""
        return {key: getattr(self, key) for key in self.config_keys}

    @property
    def n(self) -> int:
        self._check_fitted("n")
        return int(self._n)

    @property
    def data_hash(self) -> str:
        self._check_fitted("data_hash")
        return str(self._hash)

    @property
    def params(self) -> dict:
        """Settings and fitted parameters, as stored in the file's ``params``."""
        self._check_fitted("params")
        return self.config() | dict(self._fitted)

    def _check_fitted(self, verb: str) -> None:
        if self._fitted is None:
            raise CalibrationError(
                f"{self.name}.{verb} needs a calibrated calibrator; call conformalize(examples) first "
                f"or load one with {self.name}.load(path)."
            )

    # --- verbs -------------------------------------------------------------------------------
    def conformalize(self, examples: Sequence[Example]) -> Calibrator:
        """Fit the calibration parameters on ``examples`` (a sequence of Example); returns self."""
        items = check_examples(examples, self.name)
        n, fitted = self._conformalize(items)
        self._restore(fitted)
        self._n, self._hash, self._fitted = int(n), data_hash(items), fitted
        return self

    def apply(self, regions: Regions) -> Regions:
        """Calibrated regions; ``meta["calibration"]`` records the parameters applied."""
        self._check_fitted("apply")
        if not isinstance(regions, Regions):
            raise CalibrationError(f"{self.name}.apply needs a Regions, got {type(regions).__name__}.")
        out = self._apply(regions)
        return out.replace(meta=dict(out.meta) | {"calibration": self.record()})

    def evaluate(self, examples: Sequence[Example]) -> dict:
        """Empirical coverage on held-out ``examples`` in this calibrator's own terms, plus counts.

        Always has ``method``, ``metric``, ``target`` (1 - alpha), ``coverage`` and ``n``.
        """
        self._check_fitted("evaluate")
        return {"method": self.method, **self._evaluate(check_examples(examples, self.name))}

    def record(self) -> dict:
        """What ``apply`` writes into ``meta["calibration"]``."""
        return {"method": self.method, "alpha": self.alpha, "n": self.n, "data_hash": self.data_hash} | (
            self._fitted_record()
        )

    def _coverage(self, metric: str, covered: np.ndarray, n_images: int) -> dict:
        """What every ``evaluate`` reports first: the metric, its target 1 - alpha, the mean coverage
        over the calibrator's units (pairs, instances) and how many there were, on how many images."""
        coverage = float(covered.mean()) if len(covered) else None
        return {"metric": metric, "target": 1.0 - self.alpha, "coverage": coverage, "n": len(covered),
                "n_images": n_images}  # fmt: skip

    def _fitted_record(self) -> dict:
        """The fitted part of ``record`` (a calibrator made of steps gives the steps' records)."""
        return {"params": self.params}

    # --- files -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        self._check_fitted("save")
        return calibration_file(self.method, self.alpha, self.n, self.data_hash, self.params)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the calibrator as JSON (atomically: a crash never leaves a truncated file)."""
        return write_calibration(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibrator:
        """Read a file written by ``save``. On the base class this dispatches like load_calibrator."""
        return cls.from_dict(read_file(path), source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> Calibrator:
        data = check_header(data, source)
        method = data["method"]
        if cls is Calibrator:
            return _class_for(method, source).from_dict(data, source)
        if method != cls.method:
            raise CalibrationError(
                f"Calibration file {source} holds a {method!r} calibrator, not {cls.method!r}; load it "
                f"with load_calibrator(path) or the matching class."
            )
        try:
            obj = cls._from_params(data["alpha"], data["params"])
            fitted = {k: v for k, v in data["params"].items() if k not in cls.config_keys}
            obj._restore(fitted)
        except CalibrationError as e:  # a setting out of range, or a nested calibrator's own refusal
            raise refusal(source, f"invalid params: {str(e).removesuffix(f'; {RECREATE}.')}") from None
        except KeyError as e:
            raise refusal(source, f"invalid params: params.{e.args[0]} is missing") from None
        except (TypeError, ValueError) as e:
            raise refusal(source, f"invalid params ({type(e).__name__}: {e})") from None
        verify_checksum(data, source)
        obj._n, obj._hash, obj._fitted = int(data["n"]), str(data["data_hash"]), fitted
        return obj

    @classmethod
    def _from_params(cls, alpha: float, params: dict) -> Calibrator:
        return cls(alpha=alpha, **{key: params[key] for key in cls.config_keys})

    # --- to implement ------------------------------------------------------------------------
    def _conformalize(self, examples: list[Example]) -> tuple[int, dict]:  # pragma: no cover
        raise NotImplementedError

    def _restore(self, fitted: dict) -> None:  # pragma: no cover
        raise NotImplementedError

    def _apply(self, regions: Regions) -> Regions:  # pragma: no cover
        raise NotImplementedError

    def _evaluate(self, examples: list[Example]) -> dict:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in ({"alpha": self.alpha} | self.config()).items())
        state = f"n={self._n}" if self.is_conformalized else "not conformalized"
        return f"{self.name}({settings}) [{state}]"


def _class_for(method: Any, source: str) -> type[Calibrator]:
    target = METHODS.get(method) if isinstance(method, str) else None
    if target is None:
        raise CalibrationError(
            f"Calibration file {source} names unknown method {method!r}; valid methods are "
            f"{', '.join(sorted(METHODS))}."
        )
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def load_calibrator(path: str | os.PathLike) -> Calibrator:
    """Load any calibrator file, dispatching on its ``method`` to the right class."""
    return Calibrator.load(path)
