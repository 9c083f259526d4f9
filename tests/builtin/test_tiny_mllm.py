import filecmp
from pathlib import Path

from srice.builtin.tiny_mllm import TinySpec, build_tiny_model, tiny_model_path


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_same_seed_same_bytes_and_other_seed_other_weights(tmp_path):
    a = build_tiny_model(TinySpec(seed=3), tmp_path / "a")
    b = build_tiny_model(TinySpec(seed=3), tmp_path / "b")
    c = build_tiny_model(TinySpec(seed=4), tmp_path / "c")
    assert _files(a) == _files(b)
    assert "model.safetensors" in _files(a) and "chat_template.jinja" in _files(a)
    match, mismatch, errors = filecmp.cmpfiles(a, b, _files(a), shallow=False)
    assert mismatch == [] and errors == []
    assert not filecmp.cmp(a / "model.safetensors", c / "model.safetensors", shallow=False)


def test_cache_is_keyed_by_content(tmp_path):
    first = tiny_model_path(TinySpec(seed=5), root=tmp_path)
    again = tiny_model_path(TinySpec(seed=5), root=tmp_path)
    other = tiny_model_path(TinySpec(seed=5, num_layers=3), root=tmp_path)
    assert first == again != other
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, other.name])


def test_loads_in_transformers_with_processor_and_template(tiny_model):
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model)
    assert model.config.model_type == "qwen2_vl"
    assert model.config.text_config.hidden_size // model.config.text_config.num_attention_heads >= 32
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": Image.new("RGB", (640, 480))},
                {"type": "text", "text": "What colour is the square?"},
            ],
        }
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What colour")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert 4 <= image_tokens <= 64  # the processor caps images at the spec's token budget
    with torch.inference_mode():
        logits = model(**inputs).logits
    assert logits.shape[-1] >= len(processor.tokenizer) and torch.isfinite(logits).all()
