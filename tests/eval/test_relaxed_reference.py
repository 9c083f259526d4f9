"""srice's relaxed accuracy against the reference it claims: ``relaxed_correctness`` of lmms-eval
0.7.3's ChartQA task (taken from Qwen-VL's evaluation), run in its own installed environment
(``.venv-lmms``, built by env/setup.sh) on cases chosen to probe each of its rules."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from srice.eval.items import EvalItem
from srice.eval.metrics import relaxed_accuracy, score

ROOT = Path(__file__).resolve().parents[2]

# the reference's own file, loaded by path so lmms-eval's heavy package import is skipped
REFERENCE = """
import importlib.util, json, sys
from pathlib import Path
package = Path(importlib.util.find_spec("lmms_eval").submodule_search_locations[0])
spec = importlib.util.spec_from_file_location("chartqa_utils", package / "tasks" / "chartqa" / "utils.py")
utils = importlib.util.module_from_spec(spec)
spec.loader.exec_module(utils)
print(json.dumps([bool(utils.relaxed_correctness(p, t)) for p, t in json.load(sys.stdin)]))
"""

NUMBERS = [
    "0",
    "0.0",
    "-0",
    "1",
    "5",
    "-5",
    "4.75",
    "5.25",
    "5.26",
    "100",
    "104.99",
    "105",
    "105.01",
    "0.3",
    "0.315",
    "0.45",
    "45",
    "45%",
    "0.45%",
    "50%%",
    "%",
    "0%",
    "12.",
    ".5",
    "1e2",
    "1E-3",
    " 7",
    "7 ",
    "1_000",
    "1000",
    "1,000",
    "$12",
    "12",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e400",
]
WORDS = ["", "Yes", "yes", "YES", "Yes.", "no", "Brazil", "brazil ", "2019", "Twenty", "twenty", "A", "a"]


def _reference(cases: list[tuple[str, str]]) -> list[bool]:
    python = ROOT / ".venv-lmms" / "bin" / "python"
    assert python.exists(), "env/setup.sh builds .venv-lmms"
    r = subprocess.run(
        [str(python), "-c", REFERENCE], input=json.dumps(cases), capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_relaxed_accuracy_equals_lmms_eval_relaxed_correctness_on_every_pair():
    values = NUMBERS + WORDS
    cases = [(p, t) for p in values for t in values]  # 2601 pairs: every rule against every other
    expected = _reference(cases)
    ours = [relaxed_accuracy(p, t) == 1.0 for p, t in cases]
    differ = [(case, want) for case, want, got in zip(cases, expected, ours) if want != got]
    assert not differ, differ[:20]
    assert sum(expected) > 50  # the cases exercise matches, not only misses (91 of them)


def test_chartqa_questions_are_scored_by_the_reference_rule():
    item = EvalItem("c1", b"", "What share?", ("0.45",), metric="relaxed")
    assert score(item, "45%") == 1.0 and score(item, "45") == 0.0
    assert score(EvalItem("c2", b"", "How many?", ("0",), metric="relaxed"), "0.0") == 0.0
