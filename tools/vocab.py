"""Matching free-text target phrases to a closed detector's class names.

The MLLM asks for "the two men on the left" or "a vehicle"; a COCO detector knows "person" and
"car". Rules, applied to both sides after lower-casing and splitting on anything not a letter or
digit:

- every word is singularised (a short irregular table, then -ies/-es/-s rules; "bus", "glass" kept);
- a class matches a target when the class's words occur, in order and adjacent, in the target's
  words ("red car" -> car, "traffic light" -> traffic light);
- a synonym (below) occurring in the target stands for its classes ("man" -> person,
  "vehicle" -> car/truck/bus/motorcycle, "television"/"monitor"/"screen" -> tv);
- a match inside a longer match is dropped ("hot dog" -> hot dog, not dog; "teddy bear" not bear).

Deliberately simple and documented: open-vocabulary tools (OWLv2, YOLO-World/YOLOE) take the
phrases as they are and need none of this.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

COCO_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

# synonym phrase -> the class names it stands for (matched after the same normalisation)
SYNONYMS: dict[str, tuple[str, ...]] = {
    "people": ("person",),
    "man": ("person",),
    "woman": ("person",),
    "boy": ("person",),
    "girl": ("person",),
    "child": ("person",),
    "kid": ("person",),
    "baby": ("person",),
    "human": ("person",),
    "pedestrian": ("person",),
    "player": ("person",),
    "rider": ("person",),
    "vehicle": ("car", "truck", "bus", "motorcycle"),
    "automobile": ("car",),
    "taxi": ("car",),
    "van": ("car", "truck"),
    "lorry": ("truck",),
    "bike": ("bicycle", "motorcycle"),
    "motorbike": ("motorcycle",),
    "scooter": ("motorcycle",),
    "plane": ("airplane",),
    "aeroplane": ("airplane",),
    "aircraft": ("airplane",),
    "jet": ("airplane",),
    "ship": ("boat",),
    "television": ("tv",),
    "monitor": ("tv",),
    "screen": ("tv", "laptop"),
    "phone": ("cell phone",),
    "mobile": ("cell phone",),
    "smartphone": ("cell phone",),
    "cellphone": ("cell phone",),
    "sofa": ("couch",),
    "table": ("dining table",),
    "desk": ("dining table",),
    "plant": ("potted plant",),
    "fridge": ("refrigerator",),
    "hydrant": ("fire hydrant",),
    "ball": ("sports ball",),
    "racquet": ("tennis racket",),
    "doughnut": ("donut",),
    "bag": ("handbag", "backpack", "suitcase"),
    "purse": ("handbag",),
    "luggage": ("suitcase",),
    "puppy": ("dog",),
    "kitten": ("cat",),
    "hairdryer": ("hair drier",),
    "hair dryer": ("hair drier",),
    "glass": ("wine glass", "cup"),
    "mug": ("cup",),
    "computer": ("laptop",),
    "notebook": ("laptop", "book"),
    "light": ("traffic light",),
    "teddy": ("teddy bear",),
}

_IRREGULAR = {
    "people": "people",  # kept: a synonym of person in its own right
    "men": "man",
    "women": "woman",
    "children": "child",
    "mice": "mouse",
    "knives": "knife",
    "geese": "goose",
    "feet": "foot",
    "teeth": "tooth",
    "skis": "ski",
    "buses": "bus",
}
_KEEP = {"bus", "glass", "grass", "canvas", "lens", "scissors", "species", "dress", "chess", "news"}


def singular(word: str) -> str:
    """A crude English singular: enough for detector class names and the phrases models write."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word in _KEEP or len(word) <= 2:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> tuple[str, ...]:
    """Lower-cased, singularised words of ``text``."""
    return tuple(singular(w) for w in re.findall(r"[a-z0-9]+", text.lower()))


def _spans(haystack: tuple[str, ...], needle: tuple[str, ...]) -> list[tuple[int, int]]:
    n = len(needle)
    if not n:
        return []
    return [(i, i + n) for i in range(len(haystack) - n + 1) if haystack[i : i + n] == needle]


@dataclass(frozen=True)
class TargetMatch:
    """Which class indices each target phrase selected; ``unmatched`` targets selected none."""

    classes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def class_ids(self) -> tuple[int, ...]:
        return tuple(sorted({c for ids in self.classes.values() for c in ids}))

    @property
    def unmatched(self) -> tuple[str, ...]:
        return tuple(t for t, ids in self.classes.items() if not ids)


def match_targets(
    targets: Sequence[str], class_names: Sequence[str] | dict[int, str], synonyms: dict | None = None
) -> TargetMatch:
    """The classes each target phrase names (rules in the module docstring)."""
    names = dict(class_names) if isinstance(class_names, dict) else dict(enumerate(class_names))
    synonyms = SYNONYMS if synonyms is None else synonyms
    by_words: dict[tuple[str, ...], list[int]] = {}
    for idx, name in names.items():
        by_words.setdefault(words(str(name)), []).append(int(idx))
    result: dict[str, tuple[int, ...]] = {}
    for target in targets:
        tw = words(target)
        hits: list[tuple[tuple[int, int], Iterable[int]]] = []
        for cw, ids in by_words.items():
            hits += [(span, ids) for span in _spans(tw, cw)]
        for phrase, canon in synonyms.items():
            ids = [i for c in canon for i in by_words.get(words(c), [])]
            if ids:
                hits += [(span, ids) for span in _spans(tw, words(phrase))]
        # drop hits strictly inside a longer hit ("hot dog" hides "dog")
        kept = [
            (s, ids)
            for s, ids in hits
            if not any(o[0] <= s[0] and s[1] <= o[1] and (o[1] - o[0]) > (s[1] - s[0]) for o, _ in hits)
        ]
        result[target] = tuple(sorted({i for _, ids in kept for i in ids}))
    return TargetMatch(result)
