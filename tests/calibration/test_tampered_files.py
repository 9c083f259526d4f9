"""Calibration files edited, damaged or tampered with after they were written are refused, each with
the field or the check that failed (both kinds: a tool's calibrator and the uncertainty score's)."""

from __future__ import annotations

import json
import math

import pytest

from srice.errors import CalibrationError


@pytest.fixture
def us_file(tmp_path):
    from srice.calibration.uncertainty_calibration import UncertaintyCalibration

    good = UncertaintyCalibration(0.1, 0.8, 0.9, None, 20, 40, 60, "abc", exit_share=None)
    good.save(tmp_path / "uncertainty.json")
    return tmp_path / "uncertainty.json"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"qhat_open": "0.9"}, "qhat_open must be a finite number"),
        ({"qhat_open": math.nan}, "params.qhat_open is NaN"),
        ({"qhat_choice": -0.2}, r"qhat_choice must lie in \[0, 1\]"),
        ({"qhat_choice": 1e9}, r"qhat_choice must lie in \[0, 1\]"),
        ({"early_exit": math.inf}, "early_exit must be a finite number"),
        ({"n_open": 1}, "rests on n_open=1 questions, too few"),
        ({"alpha": 0}, r"alpha must be a number strictly between 0 and 1"),
    ],
)
def test_a_tampered_uncertainty_calibration_is_refused_with_the_field(us_file, change, message):
    from srice.calibration.uncertainty_calibration import UncertaintyCalibration

    data = json.loads(us_file.read_text())
    shared = {k: v for k, v in change.items() if k in data}  # the file format's own fields
    data = data | shared | {"params": data["params"] | {k: v for k, v in change.items() if k not in shared}}
    us_file.write_text(json.dumps(data))  # (json writes NaN/Infinity literals for these)
    with pytest.raises(CalibrationError, match=message):
        UncertaintyCalibration.load(us_file)


def test_an_edited_calibration_file_fails_its_checksum(us_file, tmp_path):
    from srice.calibration import ThresholdCalibrator, load_calibrator, synthetic_examples
    from srice.calibration.uncertainty_calibration import UncertaintyCalibration

    data = json.loads(us_file.read_text())
    us_file.write_text(json.dumps(data | {"params": data["params"] | {"qhat_open": 0.5}}))  # unfitted
    with pytest.raises(CalibrationError, match="does not match its checksum"):
        UncertaintyCalibration.load(us_file)
    path = (
        ThresholdCalibrator(alpha=0.1).conformalize(synthetic_examples(40, seed=1)).save(tmp_path / "t.json")
    )
    saved = json.loads(path.read_text())
    for change, message in (
        ({"params": saved["params"] | {"threshold": 0.01}}, "does not match its checksum"),
        ({"params": saved["params"] | {"threshold": math.nan}}, "params.threshold is NaN"),
        ({"params": saved["params"] | {"threshold": 7.0}}, "invalid params"),
        ({"n": 1}, "n=1 calibration units, too few"),
    ):
        path.write_text(json.dumps(saved | change))
        with pytest.raises(CalibrationError, match=message):
            load_calibrator(path)
