"""No crop larger than the model's view: ``build_agent`` caps crops at the processor's pixel budget."""

import json

from srice.builder.agents import view_pixels
from srice.builtin.toy_bundle import TOY_DIR


def test_the_toy_models_budget_is_read_from_its_processor():
    saved = json.loads((TOY_DIR / "mllm" / "processor_config.json").read_text())["image_processor"]
    assert view_pixels(TOY_DIR / "mllm") == saved["size"]["longest_edge"] == 196 * 196


def test_only_a_qwen2_vl_budget_counts(tmp_path):
    """Another processor's ``longest_edge`` is a side in pixels, not a budget: no cap is guessed."""
    other = {"image_processor_type": "Idefics3ImageProcessor", "size": {"longest_edge": 364}}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(other))
    assert view_pixels(tmp_path) is None
    qwen = {"image_processor_type": "Qwen2VLImageProcessor", "max_pixels": 12845056}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(qwen))
    assert view_pixels(tmp_path) == 12845056
    assert view_pixels(tmp_path / "missing") is None
