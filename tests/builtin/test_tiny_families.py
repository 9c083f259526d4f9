import filecmp
import json

import pytest

from srice.builtin.tiny_families import FAMILIES, FamilySpec, build_family_model, family_model_path
from srice.errors import InputError


def test_same_spec_same_bytes_other_seed_other_weights(tmp_path):
    a = build_family_model(FamilySpec(family="llava", seed=3), tmp_path / "a")
    b = build_family_model(FamilySpec(family="llava", seed=3), tmp_path / "b")
    c = build_family_model(FamilySpec(family="llava", seed=4), tmp_path / "c")
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) and "chat_template.jinja" in names
    assert filecmp.cmpfiles(a, b, names, shallow=False)[1:] == ([], [])
    assert not filecmp.cmp(a / "model.safetensors", c / "model.safetensors", shallow=False)


def test_cache_is_keyed_by_family_and_sizes(tmp_path):
    first = family_model_path(FamilySpec(family="llava"), root=tmp_path)
    assert family_model_path(FamilySpec(family="llava"), root=tmp_path) == first
    other = family_model_path(FamilySpec(family="llava", num_layers=1), root=tmp_path)
    assert other != first and len(list(tmp_path.iterdir())) == 2
    with pytest.raises(InputError, match="known: qwen2_5_vl, llava"):
        FamilySpec(family="idefics3")


@pytest.mark.parametrize("family", FAMILIES)
def test_transformers_loads_each_family_as_a_hub_checkpoint(family):
    """The generation configs differ on purpose: the backend must accept both forms (issue #26)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = family_model_path(FamilySpec(family=family))
    model = AutoModelForImageTextToText.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    text = model.config.text_config
    assert model.config.model_type == family and text.hidden_size // text.num_attention_heads >= 32
    eos = json.loads((folder / "generation_config.json").read_text())["eos_token_id"]
    assert isinstance(eos, list if family == "qwen2_5_vl" else int)
    assert (processor.tokenizer.pad_token is None) == (family == "llava")  # Llama tokenizers have none
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is it red?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    expected = {
        "qwen2_5_vl": "<|vision_start|><|image_pad|><|vision_end|>Is it red?",
        "llava": "<image>\nIs it red?",
    }
    assert expected[family] in prompt
