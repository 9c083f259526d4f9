"""The tiny model builders: deterministic, cached by content, harmless to the caller's state."""

import filecmp

import torch

from srice.builtin.tiny_tools import tiny_owl, tiny_sam, tiny_yolo


def same_files(a, b) -> bool:
    if a.is_file():
        return filecmp.cmp(a, b, shallow=False)
    names = sorted(p.name for p in a.iterdir())
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    return names == sorted(p.name for p in b.iterdir()) and not mismatch and not errors


def test_same_key_same_path_and_bytes(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    for build in (tiny_yolo, tiny_sam, tiny_owl):
        a = build(root=tmp_path / "a")
        assert build(root=tmp_path / "a") == a  # cached: the same path, not rebuilt
        b = build(root=tmp_path / "b")
        assert a.relative_to(tmp_path / "a") == b.relative_to(tmp_path / "b")  # the key is the content
        assert same_files(a, b), build.__name__
    assert torch.equal(torch.rand(3), expected)  # the caller's random stream is untouched
    assert torch.get_num_threads() == threads


def test_other_seed_other_weights(tmp_path):
    a, b = tiny_sam(root=tmp_path, seed=0), tiny_sam(root=tmp_path, seed=1)
    assert a != b and not filecmp.cmp(a, b, shallow=False)
    assert tiny_yolo(segment=True).name == "tiny-yolo11n-seg.pt"
    assert tiny_owl(root=tmp_path).is_dir() and (tiny_owl(root=tmp_path) / "tokenizer.json").exists()
