import pytest

from srice.agent.targets import parse_targets


@pytest.mark.parametrize(
    "reply, expected",
    [
        ('["red car", "the stop sign"]', ["red car", "stop sign"]),
        ('```json\n["cat", "Dog"]\n```', ["cat", "dog"]),
        ('{"objects": ["traffic light", {"name": "bus"}]}', ["traffic light", "bus"]),
        ("Objects: the cup, a plate and spoon.", ["cup", "plate", "spoon"]),
        (
            "- small circle\n- blue square\n1. text on the sign",
            ["small circle", "blue square", "text on the sign"],
        ),
        ("circle", ["circle"]),
        ("cup, cup, CUP", ["cup"]),
        ("", []),
        ("None", []),
        ("I cannot tell.", []),
        ("It depends on the lighting", []),
        ("the whole image", []),
        ('["cat", "dog"', ["cat", "dog"]),  # broken JSON falls back to the text rules
        ("[1, 2, {}]", []),
        (
            "I think that in order to answer this question we need to look very carefully at everything",
            [],
        ),
    ],
)
def test_replies(reply, expected):
    assert parse_targets(reply) == expected


def test_caps_count_and_length():
    assert len(parse_targets(", ".join(f"thing{i}" for i in range(50)))) == 5
    assert parse_targets("x" * 200) == []


def test_ten_thousand_characters_and_code_are_just_text(tmp_path):
    assert parse_targets("[" * 10_000) == []
    assert len(parse_targets("a, " * 5000)) == 1
    marker = tmp_path / "marker"
    reply = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    assert all(isinstance(t, str) for t in parse_targets(reply))
    assert all(isinstance(t, str) for t in parse_targets(f"[{reply}]"))
    assert not marker.exists()


def test_deeply_nested_replies_are_no_targets():
    """A reply nested a thousand lists deep is read without recursion errors, as no targets."""
    assert parse_targets("[" * 1000 + "]" * 1000) == [] and parse_targets("[" * 1999) == []
