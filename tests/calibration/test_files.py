"""Calibration files: round trips, the data hash, and every way a file can be wrong."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from srice import __version__
from srice.calibration import (
    BoxMarginCalibrator,
    Calibrator,
    Example,
    MaskCalibrator,
    SequentialCalibrator,
    ThresholdCalibrator,
    data_hash,
    load_calibrator,
    synthetic_examples,
)
from srice.errors import CalibrationError

MASKS = dict(image_size=(64, 48), size_range=(10.0, 30.0), with_masks=True)


def _fit(name: str) -> Calibrator:
    boxes = synthetic_examples(150, seed=21)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "recall": lambda: ThresholdCalibrator(0.1).conformalize(boxes),
            "recall-none": lambda: ThresholdCalibrator(0.1).conformalize(
                [Example(e.pred, type(e.truth).empty(e.pred.image_size)) for e in boxes]
            ),
            "precision": lambda: ThresholdCalibrator(0.15, mode="precision", delta=0.2).conformalize(boxes),
            "additive": lambda: BoxMarginCalibrator(0.1).conformalize(boxes),
            "multiplicative": lambda: BoxMarginCalibrator(0.2, kind="multiplicative").conformalize(boxes),
            "bonferroni": lambda: BoxMarginCalibrator(0.1, combine="bonferroni", iou=0.6).conformalize(boxes),
            "masks": lambda: MaskCalibrator(0.1).conformalize(synthetic_examples(60, seed=22, **MASKS)),
            "sequential": lambda: SequentialCalibrator(
                ThresholdCalibrator(0.1), BoxMarginCalibrator(0.1, kind="multiplicative"), seed=3
            ).conformalize(boxes),
        }[name]()


NAMES = [
    "recall",
    "recall-none",
    "precision",
    "additive",
    "multiplicative",
    "bonferroni",
    "masks",
    "sequential",
]


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_gives_identical_apply(tmp_path, name):
    c = _fit(name)
    path = c.save(tmp_path / "sub" / f"{name}.json")
    assert sorted(p.name for p in path.parent.iterdir()) == [f"{name}.json"]  # no temp files left
    data = json.loads(path.read_text())  # strict JSON: json.loads would accept NaN/Infinity, so check
    assert "Infinity" not in path.read_text() and "NaN" not in path.read_text()
    assert set(data) == {
        "format_version",
        "method",
        "alpha",
        "n",
        "data_hash",
        "params",
        "created_by",
        "checksum",
    }
    assert data["created_by"] == f"srice {__version__}" and data["method"] == c.method
    assert data["data_hash"].startswith("sha256:") and len(data["data_hash"]) == 7 + 64
    for loaded in (type(c).load(path), load_calibrator(path), Calibrator.load(path)):
        assert type(loaded) is type(c)
        assert loaded.record() == c.record() and loaded.alpha == c.alpha and loaded.n == c.n
        test = synthetic_examples(30, seed=23, **(MASKS if name == "masks" else {}))
        for ex in test:
            a, b = c.apply(ex.pred), loaded.apply(ex.pred)
            np.testing.assert_array_equal(a.boxes, b.boxes)
            np.testing.assert_array_equal(a.scores, b.scores)
            assert a.labels == b.labels and a.meta == b.meta
            if a.masks is not None:
                np.testing.assert_array_equal(a.masks, b.masks)
        assert loaded.evaluate(test) == c.evaluate(test)


def test_apply_records_what_it_did():
    c = _fit("recall")
    out = c.apply(synthetic_examples(1, seed=5)[0].pred)
    record = out.meta["calibration"]
    assert record == {
        "method": "threshold",
        "alpha": 0.1,
        "n": 150,
        "data_hash": c.data_hash,
        "params": c.params,
    }
    assert record["params"]["threshold"] == c.threshold and record["params"]["mode"] == "recall"
    json.dumps(out.to_json(), allow_nan=False)  # traces stay JSON
    seq = _fit("sequential").apply(synthetic_examples(1, seed=5)[0].pred).meta["calibration"]
    assert [step["method"] for step in seq["steps"]] == ["threshold", "box_margins"]


# --- the data hash ---------------------------------------------------------------------------------


def test_data_hash_is_stable_across_processes_and_sensitive_to_the_data():
    examples = synthetic_examples(40, seed=31, **MASKS)
    h = data_hash(examples)
    code = (
        "from srice.calibration import data_hash, synthetic_examples;"
        "print(data_hash(synthetic_examples(40, seed=31, image_size=(64, 48), size_range=(10.0, 30.0),"
        " with_masks=True)))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == h
    assert data_hash(synthetic_examples(40, seed=31, **MASKS)) == h
    assert MaskCalibrator(0.1).conformalize(examples).data_hash == h

    first = examples[0]
    changes = [
        first.pred.replace(scores=first.pred.scores + 1e-12),
        first.pred.replace(labels=tuple(label.upper() for label in first.pred.labels)),
        first.pred.replace(masks=~first.pred.masks),
        first.pred.replace(masks=None),
    ]
    for pred in changes:
        assert data_hash([Example(pred, first.truth)] + examples[1:]) != h
    assert data_hash(examples[::-1]) != h
    assert data_hash(examples[:-1]) != h
    assert data_hash(synthetic_examples(40, seed=32, **MASKS)) != h


# --- bad files -------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    path = _fit("additive").save(tmp_path / "margins.json")
    return path, json.loads(path.read_text())


def _write(path, data):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_other_format_version(saved):
    path, data = saved
    _write(path, data | {"format_version": 2})
    with pytest.raises(CalibrationError, match=r"format_version 2 but this srice reads version 1; recreate"):
        load_calibrator(path)


def test_other_method(saved):
    path, data = saved
    with pytest.raises(
        CalibrationError, match=r"holds a 'box_margins' calibrator, not 'threshold'; load it with"
    ):
        ThresholdCalibrator.load(path)
    _write(path, data | {"method": "isotonic"})
    with pytest.raises(CalibrationError, match=r"unknown method 'isotonic'; valid methods are box_margins, "):
        load_calibrator(path)
    # a file whose method was edited to another real method fails on its params, not later
    _write(path, data | {"method": "mask_dilation"})
    with pytest.raises(CalibrationError, match="invalid params"):
        load_calibrator(path)


@pytest.mark.parametrize("cut", [0, 1, 10, 100, -2])
def test_truncated_file(saved, cut):
    path, _ = saved
    text = path.read_text()
    _write(path, text[:cut])
    with pytest.raises(CalibrationError, match=r"not valid JSON \(corrupt or truncated\); recreate it"):
        load_calibrator(path)


@pytest.mark.parametrize(
    "content, message",
    [
        ("\x00\x01garbage", "not valid JSON"),
        ("[1, 2, 3]", "does not hold a JSON object"),
        ('{"method": "threshold"}', "lacks format_version, alpha, n, data_hash, params"),
    ],
)
def test_not_a_calibration_file(tmp_path, content, message):
    path = _write(tmp_path / "x.json", content)
    with pytest.raises(CalibrationError, match=message):
        load_calibrator(path)


def test_binary_and_missing_files(tmp_path):
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(CalibrationError, match="cannot be read|not valid JSON"):
        load_calibrator(path)
    with pytest.raises(CalibrationError, match="does not exist; check the path"):
        load_calibrator(tmp_path / "nope.json")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"alpha": 1.5}, "alpha must be"),
        ({"alpha": "0.1"}, r"alpha must be a number strictly between 0 and 1, got '0.1'"),
        ({"n": -1}, "n must be a whole number >= 0, got -1"),
        ({"n": 2.5}, "n must be a whole number >= 0, got 2.5"),
        ({"params": []}, "params must be a JSON object, got list"),
    ],
)
def test_bad_header_fields(saved, change, message):
    path, data = saved
    _write(path, data | change)
    with pytest.raises(CalibrationError, match=message):
        load_calibrator(path)


@pytest.mark.parametrize(
    "params",
    [
        {"margins": [1.0, 2.0]},
        {"margins": ["a", 1, 1, 1]},
        {"margins": None},
        {"kind": "log"},
        {"combine": None},
    ],
)
def test_bad_params(saved, params):
    path, data = saved
    _write(path, data | {"params": data["params"] | params})
    with pytest.raises(CalibrationError, match="invalid params|must be one of"):
        load_calibrator(path)
    _write(path, data | {"params": {k: v for k, v in data["params"].items() if k != "margins"}})
    with pytest.raises(CalibrationError, match="invalid params"):
        load_calibrator(path)


def test_bad_nested_and_other_params(tmp_path):
    seq = json.loads(_fit("sequential").save(tmp_path / "s.json").read_text())
    broken = seq | {"params": seq["params"] | {"margins": seq["params"]["margins"] | {"method": "threshold"}}}
    with pytest.raises(CalibrationError, match="holds a 'threshold' calibrator, not 'box_margins'"):
        load_calibrator(_write(tmp_path / "s.json", broken))
    thr = json.loads(_fit("recall").save(tmp_path / "t.json").read_text())
    for bad in ("-infinity", None, True):
        with pytest.raises(CalibrationError, match="invalid params"):
            load_calibrator(_write(tmp_path / "t.json", thr | {"params": thr["params"] | {"threshold": bad}}))
    masks = json.loads(_fit("masks").save(tmp_path / "m.json").read_text())
    for bad in (-1, 1.5, "3"):
        with pytest.raises(CalibrationError, match="invalid params"):
            load_calibrator(
                _write(tmp_path / "m.json", masks | {"params": masks["params"] | {"radius": bad}})
            )
