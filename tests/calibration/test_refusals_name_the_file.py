"""Every refused calibration file names the file and the field that is wrong: a user with several
calibration folders (one per tool, one per variant) must know which file to fix or recreate, and
what in it. Real files, written by ``save`` and then edited as a user or a damaged disk would."""

from __future__ import annotations

import json
import math
import warnings

import pytest

from srice.calibration import (
    BoxMarginCalibrator,
    MaskCalibrator,
    SequentialCalibrator,
    ThresholdCalibrator,
    load_calibrator,
    synthetic_examples,
)
from srice.errors import CalibrationError

MASKS = dict(image_size=(64, 48), size_range=(10.0, 30.0), with_masks=True)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One file of each calibrator kind, as ``save`` wrote it."""
    root = tmp_path_factory.mktemp("calib")
    boxes = synthetic_examples(60, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = {
            "threshold": ThresholdCalibrator(0.1).conformalize(boxes),
            "margins": BoxMarginCalibrator(0.1).conformalize(boxes),
            "masks": MaskCalibrator(0.1).conformalize(synthetic_examples(60, seed=5, **MASKS)),
            "sequential": SequentialCalibrator(
                ThresholdCalibrator(0.1), BoxMarginCalibrator(0.1)
            ).conformalize(boxes),
        }
    return {name: json.loads(c.save(root / f"{name}.json").read_text()) for name, c in fitted.items()}


def _refusal(tmp_path, data, load=load_calibrator) -> str:
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))  # NaN and Infinity as JSON's literals, as an editor may leave them
    with pytest.raises(CalibrationError) as caught:
        load(path)
    return str(caught.value)


def _params(data, **change):
    return data | {"params": data["params"] | change}


HEADER = [  # (change to the file's own fields, field, what the message says of it)
    ({"alpha": math.nan}, "alpha", "must be a number strictly between 0 and 1, got nan"),
    ({"alpha": "0.1"}, "alpha", "must be a number strictly between 0 and 1, got '0.1'"),
    ({"alpha": 1.5}, "alpha", "must be a number strictly between 0 and 1, got 1.5"),
    ({"n": -1}, "n", "must be a whole number >= 0, got -1"),
    ({"n": 2.5}, "n", "must be a whole number >= 0, got 2.5"),
    ({"n": 1}, "n", "n=1 calibration units, too few"),
    ({"params": []}, "params", "must be a JSON object, got list"),
    ({"data_hash": None}, "data_hash", "must be text, got None"),
    ({"method": 7}, "method", "unknown method 7"),
]


@pytest.mark.parametrize(
    "change, field, problem", HEADER, ids=[f"{c[1]}={list(c[0].values())[0]}" for c in HEADER]
)
def test_a_bad_header_field_is_refused_with_the_file_and_the_field(saved, tmp_path, change, field, problem):
    message = _refusal(tmp_path, saved["threshold"] | change)
    assert str(tmp_path / "edited.json") in message and field in message and problem in message, message


PARAMS = [  # (calibrator, change to its params, field, what the message says)
    ("threshold", {"delta": math.nan}, "params.delta", "is NaN, which srice never writes"),
    ("threshold", {"delta": 1.5}, "delta", "must be a number strictly between 0 and 1, got 1.5"),
    ("threshold", {"iou": 2}, "iou", "must be in (0, 1], got 2"),
    ("threshold", {"mode": "x"}, "mode", "must be one of recall, precision, got 'x'"),
    ("threshold", {"threshold": math.nan}, "params.threshold", "NaN"),
    ("threshold", {"threshold": 7.0}, "threshold", "must be a score in [0, 1]"),
    ("threshold", {"calibration_risk": [1.0, math.nan]}, "params.calibration_risk[1]", "NaN"),
    ("margins", {"kind": "log"}, "kind", "must be one of"),
    ("margins", {"iou": 0}, "iou", "must be in (0, 1]"),
    ("masks", {"iou": -1}, "iou", "must be in (0, 1]"),
]


@pytest.mark.parametrize("kind, change, field, problem", PARAMS, ids=[f"{p[0]}.{p[2]}" for p in PARAMS])
def test_a_bad_parameter_is_refused_with_the_file_and_the_field(
    saved, tmp_path, kind, change, field, problem
):
    message = _refusal(tmp_path, _params(saved[kind], **change))
    assert str(tmp_path / "edited.json") in message and field in message and problem in message, message


def test_a_missing_parameter_is_named_with_the_file(saved, tmp_path):
    data = saved["threshold"]
    for key in ("threshold", "delta"):
        message = _refusal(tmp_path, data | {"params": {k: v for k, v in data["params"].items() if k != key}})
        assert str(tmp_path / "edited.json") in message and f"params.{key} is missing" in message, message


def test_a_bad_field_of_a_nested_calibrator_names_the_outer_file_and_the_step(saved, tmp_path):
    data = saved["sequential"]
    for alpha, problem in (
        (math.nan, "params.threshold.alpha is NaN"),
        (1.5, "alpha must be a number strictly"),
    ):
        message = _refusal(tmp_path, _params(data, threshold=data["params"]["threshold"] | {"alpha": alpha}))
        assert str(tmp_path / "edited.json") in message and "threshold" in message and problem in message, (
            message
        )
        assert message.count("recreate it") == 1, message


def test_the_uncertainty_calibration_names_its_file_for_every_field(tmp_path):
    from srice.calibration.uncertainty_calibration import UncertaintyCalibration

    path = UncertaintyCalibration(0.1, 0.8, 0.9, None, 20, 40, 60, "abc").save(tmp_path / "u.json")
    data = json.loads(path.read_text())
    load = UncertaintyCalibration.load
    for change, field, problem in (
        ({"alpha": math.nan}, "alpha", "must be a number strictly between 0 and 1, got nan"),
        ({"n": "many"}, "n", "must be a whole number >= 0"),
        ({"data_hash": 3}, "data_hash", "must be text"),
    ):
        message = _refusal(tmp_path, data | change, load)
        assert str(tmp_path / "edited.json") in message and field in message and problem in message, message
    for change, field in (
        ({"qhat_open": math.nan}, "qhat_open"),
        ({"bogus": 1}, "bogus"),
        ({"n_exit": -3}, "n_exit"),
    ):
        message = _refusal(tmp_path, _params(data, **change), load)
        assert str(tmp_path / "edited.json") in message and field in message, message
