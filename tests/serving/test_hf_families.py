"""The in-process backend loads what transformers loads (issue #26): other model families than srice's
own Qwen2-VL, EOS ids given as an int, a list or not at all, a tokenizer without a pad token.

Real transformers and real (tiny, random-weight) checkpoints; nothing is mocked. Where a test needs the
model to emit a given token, it makes that token the EOS in a copy of the checkpoint's files, as a user's
checkpoint would name it.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest

from conftest import scene
from srice.builtin.tiny_families import FAMILIES, FamilySpec, family_model_path
from srice.errors import InputError, ServingError
from srice.serving.hf import TransformersBackend
from srice.serving.types import Message, Request

QUESTIONS = (
    "What colour is the circle?",
    "How many objects are there in the picture, left or right of the star?",
)


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    """(family name, checkpoint folder, its backend): Qwen2.5-VL (EOS a list), LLaVA (EOS an int, no pad)."""
    folder = family_model_path(FamilySpec(family=request.param))
    return request.param, folder, TransformersBackend(folder, device="cpu")


def _request(question: str = QUESTIONS[0], size=(320, 240), seed: int = 0, max_tokens: int = 6) -> Request:
    content = (scene(*size, seed=seed), question)
    return Request((Message("user", content),), max_tokens=max_tokens, top_logprobs=3)


def _ids(completion) -> list[int]:
    return [t.token_id for t in completion.tokens]


def _copy(folder, tmp_path, *, eos="keep", tokenizer_eos="keep"):
    """A copy of the checkpoint whose generation config names ``eos`` (an int, a list, or None: no EOS
    there) and whose tokenizer names ``tokenizer_eos`` (a token string or None); "keep" leaves it."""
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    edits = {
        "generation_config.json": ("eos_token_id", eos),
        "tokenizer_config.json": ("eos_token", tokenizer_eos),
    }
    for name, (field, value) in edits.items():
        if value == "keep":
            continue
        data = json.loads((copy / name).read_text())
        data.pop(field, None)
        if value is not None:
            data[field] = value
        (copy / name).write_text(json.dumps(data))
    if tokenizer_eos is None:  # nor in the model's own config: no EOS anywhere
        config = json.loads((copy / "config.json").read_text())
        config["text_config"].pop("eos_token_id", None)
        (copy / "config.json").write_text(json.dumps(config))
    return copy


def _count_generate(backend, monkeypatch) -> list[int]:
    """Counts the model's generate calls (each still runs): one per batch means no one-by-one fallback."""
    calls = []
    real = backend.model.generate

    def counted(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(backend.model, "generate", counted)
    return calls


def test_family_answers_a_request_with_an_image(family):
    name, _, backend = family
    assert backend.model.config.model_type == name
    [c] = backend.generate([_request()])
    [text_only] = backend.generate([Request((Message("user", (QUESTIONS[0],)),), max_tokens=1)])
    assert c.error is None and c.finish_reason in ("stop", "length")
    assert 1 <= len(c.tokens) == c.completion_tokens <= 6
    assert c.prompt_tokens >= text_only.prompt_tokens + 4  # the image became tokens of the prompt
    assert c.text == backend.processor.tokenizer.decode(_ids(c), skip_special_tokens=True)
    for t in c.tokens:
        assert len(t.top_logprobs) == 3 and t.logprob <= 0
        assert t.token_id == t.top_logprobs[0].token_id  # greedy: the chosen token is the most likely
        assert t.logprob == pytest.approx(t.top_logprobs[0].logprob)
        assert sum(math.exp(a.logprob) for a in t.top_logprobs) <= 1 + 1e-5


def test_batch_of_different_lengths_answers_like_one_at_a_time(family, monkeypatch):
    _, _, backend = family
    requests = [
        _request(QUESTIONS[0]),
        _request(QUESTIONS[1], size=(200, 400), seed=1),
        _request("Is it red?"),
    ]
    alone = [backend.generate([r])[0] for r in requests]
    calls = _count_generate(backend, monkeypatch)
    together = backend.generate(requests)
    assert calls == [3]  # one padded batch, not a fallback to one request at a time
    assert len({c.prompt_tokens for c in alone}) == 3
    for a, b in zip(alone, together):
        assert b.error is None and b.prompt_tokens == a.prompt_tokens
        assert _ids(b) == _ids(a) and b.finish_reason == a.finish_reason
        assert [t.logprob for t in b.tokens] == pytest.approx([t.logprob for t in a.tokens], abs=1e-4)


@pytest.mark.parametrize("form", ["int", "list"])
def test_eos_as_int_or_list_stops_there(family, tmp_path, form):
    """The issue's crash: ``eos_token_id`` an int in generation_config.json (LLaVA's own build has one)."""
    _, folder, backend = family
    greedy = _ids(backend.generate([_request(max_tokens=6)])[0])
    stop = greedy[1]
    copy = _copy(folder, tmp_path, eos=stop if form == "int" else [stop, 0])
    [c] = TransformersBackend(copy, device="cpu").generate([_request(max_tokens=6)])
    assert c.finish_reason == "stop" and _ids(c) == greedy[: greedy.index(stop) + 1]


def test_no_eos_in_generation_config_uses_the_tokenizers(family, tmp_path):
    _, folder, backend = family
    greedy = _ids(backend.generate([_request(max_tokens=6)])[0])
    stop = greedy[1]
    word = backend.processor.tokenizer.convert_ids_to_tokens(stop)
    copy = _copy(folder, tmp_path, eos=None, tokenizer_eos=word)
    [c] = TransformersBackend(copy, device="cpu").generate([_request(max_tokens=6)])
    assert c.finish_reason == "stop" and _ids(c) == greedy[: greedy.index(stop) + 1]


def test_no_eos_anywhere_runs_to_max_tokens_and_still_batches(family, tmp_path, monkeypatch):
    _, folder, _ = family
    from transformers import AutoTokenizer

    copy = _copy(folder, tmp_path, eos=None, tokenizer_eos=None)
    with pytest.warns(UserWarning, match="names an EOS token"):  # said where the user looks, not silent
        backend = TransformersBackend(copy, device="cpu")
    requests = [_request(QUESTIONS[0], max_tokens=5), _request(QUESTIONS[1], seed=2, max_tokens=3)]
    alone = [backend.generate([r])[0] for r in requests]
    calls = _count_generate(backend, monkeypatch)
    together = backend.generate(requests)
    assert calls == [2]
    assert [len(c.tokens) for c in together] == [5, 3]
    assert [c.finish_reason for c in together] == ["length", "length"]
    assert [_ids(c) for c in together] == [_ids(c) for c in alone]
    assert len(backend.processor.tokenizer) == len(AutoTokenizer.from_pretrained(copy))  # no token added


def test_a_folder_that_does_not_load_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found") as missing:
        TransformersBackend(tmp_path / "nowhere", device="cpu")
    assert str(tmp_path / "nowhere") in str(missing.value)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ServingError) as error:
        TransformersBackend(broken, device="cpu")
    assert str(broken) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("family_name", ["qwen2_vl", *FAMILIES])
def test_srice_ask_answers_with_your_own_model_in_one_flag(family_name, tiny_model, tmp_path):
    """``srice ask --backend transformers --model DIR``: a Qwen2-VL, a Qwen2.5-VL and a LLaVA folder
    saved by transformers each answer the question with their direct pathway, as a user would run it."""
    from conftest import run_srice

    folder = tiny_model if family_name == "qwen2_vl" else family_model_path(FamilySpec(family=family_name))
    scene().save(tmp_path / "a.png")
    question = ["--image", str(tmp_path / "a.png"), "--question", "What colour is the square?", "--json"]
    model = ["--backend", "transformers", "--model", str(folder), "--device", "cpu"]
    r = run_srice("ask", *model, "--tools", "", *question)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["backend"] == f"transformers:{folder}" and out["pathway"] == "direct"
    assert out["tokens"] and all(math.isfinite(t["logprob"]) for t in out["tokens"])
    assert "fit one on synthetic questions with: srice calibrate --uncertainty --model" in r.stderr
