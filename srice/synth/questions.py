"""Questions about a synthetic scene, each with one right answer recomputable from the scene.

A question is planned first (kind, and whether its target is tiny), so the scene can be made to
contain what the plan needs; then it is built from the scene by enumerating every valid candidate
of that kind and size and drawing one. Referring expressions are checked to pick out exactly one
object: an ambiguous question would make a correct model look wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from srice.synth.scene import PALETTE, SHAPES, SIZES, WORDS, Scene, SceneObject, gap

OPEN_KINDS = ("colour", "count", "exists", "text", "leftright")
MC_KINDS = ("colour_mc", "shape_mc", "text_mc")
KINDS = OPEN_KINDS + MC_KINDS
TEXT_KINDS = ("text", "text_mc")
LETTERS = "ABCD"
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

# Referring expressions, tried in order until one is unique. A question never refers to an object
# by the attribute it asks about; texture is only used for non-solid objects ("the striped star").
BY_SHAPE = (("shape",), ("size", "shape"), ("texture", "shape"), ("size", "texture", "shape"))
BY_COLOUR = (("colour",), ("size", "colour"), ("texture", "colour"), ("size", "texture", "colour"))
BY_NAME = (("colour", "shape"), ("size", "colour", "shape"), ("size", "texture", "colour", "shape"))


@dataclass(frozen=True)
class Plan:
    kind: str
    tiny: bool  # whether the question's (smallest) target should be tiny


@dataclass(frozen=True)
class Candidate:
    question: str
    answer: str  # the open answer, or the correct option's text for multiple choice
    targets: tuple[SceneObject, ...]  # the objects one must look at to answer
    refers: tuple[str, ...] = ()  # the referring expressions used

    @property
    def tiny(self) -> bool:
        return any(t.size == "tiny" for t in self.targets)


@dataclass(frozen=True)
class Built:
    kind: str
    candidate: Candidate
    options: tuple[str, ...] | None
    answer: str  # a letter for multiple choice
    fallback: bool  # the plan's kind or size was impossible in this scene


def plan_questions(rng: np.random.Generator, kinds, tiny_fraction: float, mc_fraction: float) -> list[Plan]:
    """2-4 planned questions. Each is tiny with probability ``tiny_fraction``, stratified per image
    (k questions get floor(k * p + u) tiny targets, u uniform), so the realised share stays close to
    p even for small sets; each is multiple choice with probability ``mc_fraction`` (when both
    families are enabled)."""
    count = int(rng.integers(2, 5))
    n_tiny = min(count, int(np.floor(count * tiny_fraction + rng.random())))
    tiny = np.zeros(count, dtype=bool)
    tiny[rng.permutation(count)[:n_tiny]] = True
    plans = []
    for k in range(count):
        mc = bool(rng.random() < mc_fraction)
        pool = [kind for kind in kinds if (kind in MC_KINDS) == mc] or list(kinds)
        plans.append(Plan(pool[int(rng.integers(len(pool)))], bool(tiny[k])))
    return plans


def build_question(plan: Plan, scene: Scene, rng: np.random.Generator, kinds, used: set[str]) -> Built | None:
    """The planned question, else the nearest feasible one: same size class and family, then the
    other family, then the other size class. ``used`` holds question texts already asked here."""
    same = [k for k in kinds if k != plan.kind and (k in MC_KINDS) == (plan.kind in MC_KINDS)]
    other = [k for k in kinds if k != plan.kind and k not in same]
    order = (
        [plan.kind]
        + [same[i] for i in rng.permutation(len(same))]
        + [other[i] for i in rng.permutation(len(other))]
    )
    for tiny in (plan.tiny, not plan.tiny):
        for kind in order:
            pool = [
                c
                for c in CANDIDATES[kind.removesuffix("_mc")](scene)
                if c.tiny == tiny and c.question not in used
            ]
            if kind == "exists" and pool:  # balance yes and no
                wanted = "yes" if rng.random() < 0.5 else "no"
                pool = [c for c in pool if c.answer == wanted] or pool
            if not pool:
                continue
            candidate = pool[int(rng.integers(len(pool)))]
            fallback = kind != plan.kind or tiny != plan.tiny
            if kind in MC_KINDS:
                options, letter = choice_options(kind, candidate, scene, rng)
                return Built(kind, candidate, options, letter, fallback)
            return Built(kind, candidate, None, candidate.answer, fallback)
    return None


def refer(o: SceneObject, objects: list[SceneObject], combos) -> str | None:
    """The first expression from ``combos`` that matches ``o`` and no other object, e.g. "tiny red star"."""
    for combo in combos:
        if "texture" in combo and o.texture == "solid":
            continue
        matches = [p for p in objects if all(getattr(p, a) == getattr(o, a) for a in combo)]
        if matches == [o]:
            words = [getattr(o, a) for a in ("size", "texture", "colour") if a in combo]
            return " ".join(words + [o.shape if "shape" in combo else "object"])
    return None


def _colour(scene: Scene) -> list[Candidate]:
    out = []
    for o in scene.objects:
        if expr := refer(o, scene.objects, BY_SHAPE):
            out.append(Candidate(f"What colour is the {expr}?", o.colour, (o,), (expr,)))
    return out


def _shape(scene: Scene) -> list[Candidate]:
    out = []
    for o in scene.objects:
        if expr := refer(o, scene.objects, BY_COLOUR):
            out.append(Candidate(f"What shape is the {expr}?", o.shape, (o,), (expr,)))
    return out


def _text(scene: Scene) -> list[Candidate]:
    out = []
    for o in scene.objects:
        if o.text and (expr := refer(o, scene.objects, BY_NAME)):
            out.append(Candidate(f"What is written on the {expr}?", o.text, (o,), (expr,)))
    return out


def _count(scene: Scene) -> list[Candidate]:
    """Counts by shape, by colour, and by both (where that differs from the shape's count)."""
    out = []
    for colour in (c for c in PALETTE if any(o.colour == c for o in scene.objects)):
        of_colour = tuple(o for o in scene.objects if o.colour == colour)
        out.append(Candidate(f"How many {colour} objects are there?", str(len(of_colour)), of_colour))
    for shape in (s for s in SHAPES if any(o.shape == s for o in scene.objects)):
        of_shape = tuple(o for o in scene.objects if o.shape == shape)
        out.append(Candidate(f"How many {shape}s are there?", str(len(of_shape)), of_shape))
        for colour in (c for c in PALETTE if any(o.colour == c for o in of_shape)):
            both = tuple(o for o in of_shape if o.colour == colour)
            if len(both) != len(of_shape):
                out.append(Candidate(f"How many {colour} {shape}s are there?", str(len(both)), both))
    return out


def _exists(scene: Scene) -> list[Candidate]:
    """Yes: a colour+shape present. No: a present shape in a colour it never has, so answering needs a
    look at every object of that shape (a near miss, not an absent shape that is trivially absent)."""
    out = []
    for shape in (s for s in SHAPES if any(o.shape == s for o in scene.objects)):
        of_shape = tuple(o for o in scene.objects if o.shape == shape)
        for colour in PALETTE:
            both = tuple(o for o in of_shape if o.colour == colour)
            article = "an" if colour[0] in "aeiou" else "a"
            question = f"Is there {article} {colour} {shape}?"
            out.append(Candidate(question, "yes", both) if both else Candidate(question, "no", of_shape))
    return out


def _leftright(scene: Scene) -> list[Candidate]:
    """Pairs whose boxes are apart horizontally by at least the scene gap, so the answer is clear."""
    out = []
    space = gap(scene.width, scene.height)
    for a in scene.objects:
        for b in scene.objects:
            if a is b:
                continue
            if a.box[2] + space <= b.box[0]:
                side = "left"
            elif b.box[2] + space <= a.box[0]:
                side = "right"
            else:
                continue
            ea, eb = refer(a, scene.objects, BY_NAME), refer(b, scene.objects, BY_NAME)
            if ea and eb:
                out.append(Candidate(f"Is the {ea} left or right of the {eb}?", side, (a, b), (ea, eb)))
    return out


CANDIDATES = {
    "colour": _colour,
    "shape": _shape,
    "text": _text,
    "count": _count,
    "exists": _exists,
    "leftright": _leftright,
}


def choice_options(kind: str, c: Candidate, scene: Scene, rng) -> tuple[tuple[str, ...], str]:
    """Four options with the right one at a uniformly random letter. Distractors come first from the
    same attribute of other objects in the scene (what a model that looked at the wrong object would
    say), then from the rest of the vocabulary."""
    attribute = {"colour_mc": "colour", "shape_mc": "shape", "text_mc": "text"}[kind]
    seen = [getattr(o, attribute) for o in scene.objects if getattr(o, attribute)]
    if attribute == "text":  # digits are confused with digits, words with words
        seen = [v for v in seen if v.isdigit() == c.answer.isdigit()]
    in_scene = _unique(v for v in (seen[i] for i in rng.permutation(len(seen))) if v != c.answer)
    if attribute == "colour":
        pool = list(PALETTE)
    elif attribute == "shape":
        pool = list(SHAPES)
    else:
        pool = _text_distractors(c.answer, rng)
    rest = [v for v in (pool[i] for i in rng.permutation(len(pool))) if v != c.answer and v not in in_scene]
    distractors = (in_scene + rest)[:3]
    position = int(rng.integers(4))
    options = tuple(distractors[:position] + [c.answer] + distractors[position:])
    return options, LETTERS[position]


def _text_distractors(text: str, rng) -> list[str]:
    """Look-alikes of the right text: for digits, the same length with one or more digits changed;
    for words, other words of the same length first."""
    if text.isdigit():
        out = []
        while len(out) < 6:
            digits = list(text)
            for i in rng.choice(len(digits), size=int(rng.integers(1, len(digits) + 1)), replace=False):
                digits[i] = str(int(rng.integers(1 if i == 0 and len(digits) > 1 else 0, 10)))
            candidate = "".join(digits)
            if candidate != text and candidate not in out:
                out.append(candidate)
        return out
    same = [w for w in WORDS if len(w) == len(text) and w != text]
    return same + [w for w in WORDS if len(w) != len(text)]


def _unique(values) -> list:
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def record(built: Built, qid: str, image: str, scene: Scene) -> dict:
    """One questions.jsonl line. ``target_box`` is the union of the targets' boxes (the region a
    zooming pathway should crop); ``target_size`` is the smallest target's size class."""
    c = built.candidate
    boxes = [list(t.box) for t in c.targets]
    union = [
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    ]
    answers = [built.answer]
    if built.kind == "count" and int(c.answer) < len(NUMBER_WORDS):
        answers.append(NUMBER_WORDS[int(c.answer)])
    smallest = min(
        c.targets, key=lambda t: (SIZES.index(t.size), max(t.box[2] - t.box[0], t.box[3] - t.box[1]))
    )
    meta = {
        "image_id": scene.id,
        "image_size": [scene.width, scene.height],
        "target_ids": [t.id for t in c.targets],
        "target_size": smallest.size,
        "target_px": max(smallest.box[2] - smallest.box[0], smallest.box[3] - smallest.box[1]),
        "target_box": union,
        "target_boxes": boxes,
        "refers": list(c.refers),
        "answer_text": c.answer,
        "fallback": built.fallback,
    }
    return {
        "id": qid,
        "image": image,
        "question": c.question,
        "options": list(built.options) if built.options is not None else None,
        "answer": built.answer,
        "answers": answers,
        "metric": "mc" if built.options is not None else "exact",
        "kind": built.kind,
        "meta": meta,
    }
