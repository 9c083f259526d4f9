"""Scenes for the synthetic VQA world: sampling objects, placing them without overlap, rasterising
their masks (``srice.synth.render`` paints them).

Each object's mask is rasterised once, here, and later both painted through and written as its COCO
segmentation, so ground truth and pixels agree exactly (a tool's calibration against it never fights
rasterisation noise of our own making). Randomness comes only from the numpy ``Generator`` passed
in, so a scene is a pure function of its seed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Well separated, and all in the toy model's vocabulary (srice.builtin.tiny_mllm). No white or grey: those are
# the background's colours.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (235, 205, 20),
    "green": (40, 160, 60),
    "blue": (40, 90, 215),
    "purple": (140, 60, 180),
    "brown": (125, 80, 40),
    "black": (30, 30, 30),
}
DARK_TEXT, LIGHT_TEXT = (20, 20, 20), (250, 250, 250)
LIGHT_FILLS = ("orange", "yellow")  # these carry dark text; every other colour carries light text

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "diamond")
TEXT_SHAPES = ("square", "circle", "hexagon")  # shapes with room for a plate of text
TEXT_ROOM = {"square": 0.8, "circle": 0.66, "hexagon": 0.6}  # inner square, as a share of the side
TEXTURES = ("solid", "striped", "dotted")
SIZES = ("tiny", "small", "large")
WORDS = (
    "cat", "dog", "sun", "map", "key", "box", "bus", "car", "cup", "pen", "zoo", "ice",
    "stop", "exit", "open", "park", "shop", "taxi", "milk", "fish", "bird", "tree", "moon", "lamp",
    "door", "gate", "rain", "road", "kiwi", "frog", "book", "ship", "wolf", "bell", "leaf", "nest",
)  # fmt: skip
TINY_SIDE = (6, 12)  # px, whatever the image size: a few px once a big image is shrunk to a low token budget
TINY_TEXT_SIDE = (11, 12)  # a tiny plate must still hold one legible digit
MIN_FONT, TINY_FONT = 10, 9  # smallest text sizes; load_default digits are ~0.8 x size tall
MAX_LARGE = 3


@dataclass
class SceneObject:
    """One object of a scene; ``mask`` covers the tight ``box`` (x1, y1, x2, y2, end-exclusive)."""

    id: str
    shape: str
    colour: str
    size: str  # "tiny" | "small" | "large"
    side: int  # nominal side of the square the shape is drawn in
    texture: str = "solid"
    text: str | None = None
    font_size: int | None = None
    origin: tuple[int, int] = (0, 0)  # top-left of the nominal square
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    mask: np.ndarray | None = field(default=None, repr=False)
    polygon: list[int] | None = None  # global integer vertices (x, y, x, y, ...); None for circles

    @property
    def centre(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return ((x1 + x2) / 2, (y1 + y2) / 2)

    @property
    def rgb(self) -> tuple[int, int, int]:
        return PALETTE[self.colour]

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "shape": self.shape,
            "colour": self.colour,
            "rgb": list(self.rgb),
            "texture": self.texture,
            "text": self.text,
            "font_size": self.font_size,
            "size": self.size,
            "box": list(self.box),
            "centre": list(self.centre),
            "area": int(self.mask.sum()) if self.mask is not None else 0,
        }


@dataclass
class Scene:
    id: str
    width: int
    height: int
    objects: list[SceneObject]
    background: tuple[int, int, int]

    def to_json(self, image: str) -> dict:
        return {
            "id": self.id,
            "image": image,
            "width": self.width,
            "height": self.height,
            "background": list(self.background),
            "objects": [o.to_json() for o in self.objects],
        }


def gap(width: int, height: int) -> int:
    """Minimum free space between two objects (and to the border): enough that no crop or box
    margin of a tool has to separate touching objects."""
    return max(4, round(0.01 * min(width, height)))


def sample_scene(
    rng: np.random.Generator,
    scene_id: str,
    *,
    min_side: int,
    max_side: int,
    need_tiny_text: int = 0,
    need_text: int = 0,
    min_tiny: int = 1,
    min_big: int = 1,
) -> Scene:
    """A placed (not yet rendered) scene of 2-7 objects with at least one tiny and one bigger object.

    Tiny objects are why the data set exists: an MLLM at a low image-token budget cannot resolve a
    6-12 px object in the full view of a 672-1344 px image, while a zoomed crop shows it plainly.
    ``need_*`` ask for that many text plates (tiny / bigger), ``min_*`` for that many tiny / non-tiny
    objects, so that the questions planned for this image find distinct targets of their size.
    """
    width, height = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
    while True:  # a rare failed placement resamples the whole layout, deterministically
        objects = _sample_objects(
            rng, scene_id, width, height, need_tiny_text, need_text, max(min_tiny, 1), max(min_big, 1)
        )
        if _place(rng, objects, width, height):
            return Scene(scene_id, width, height, objects, _background_colour(rng))


def _sample_objects(
    rng, scene_id, width, height, need_tiny_text, need_text, min_tiny, min_big
) -> list[SceneObject]:
    count = max(int(rng.integers(2, 8)), min_tiny + min_big)
    n_tiny = int(np.clip(rng.binomial(count, 0.45), min_tiny, count - min_big))
    objects = _draw_attributes(rng, count, n_tiny)
    tiny = [o for o in objects if o.size == "tiny"]
    big = [o for o in objects if o.size != "tiny"]
    plates = {id(o) for group, k in ((tiny, need_tiny_text), (big, need_text)) for o in _pick(rng, group, k)}
    for o in objects:
        wants_text = rng.random() < 0.3 and (
            o.shape in TEXT_SHAPES if o.size != "tiny" else o.shape == "square"
        )
        if id(o) in plates or wants_text:
            if o.size == "tiny":
                o.shape = "square"
            elif o.shape not in TEXT_SHAPES:
                o.shape = TEXT_SHAPES[int(rng.integers(len(TEXT_SHAPES)))]
            o.text = ""  # chosen once the side is known
    _distinct_tiny(rng, tiny)
    for k, o in enumerate(objects):
        o.id = f"{scene_id}-o{k}"
        o.side = _sample_side(rng, o.size, min(width, height), o.text is not None)
        if o.text is not None:
            o.text, o.font_size = _sample_text(rng, o)
        elif o.size != "tiny":
            o.texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    return objects


def _draw_attributes(rng, count: int, n_tiny: int) -> list[SceneObject]:
    """Size class, shape and colour of each object, in random order."""
    objects: list[SceneObject] = []
    n_large = 0
    for k in range(count):
        if k < n_tiny:
            size = "tiny"
        else:
            size = "large" if n_large < MAX_LARGE and rng.random() < 0.4 else "small"
            n_large += size == "large"
        # Repeated shapes make counting and disambiguation (by size, texture, colour) non-trivial.
        if objects and rng.random() < 0.35:
            shape = objects[int(rng.integers(len(objects)))].shape
        else:
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
        colour = list(PALETTE)[int(rng.integers(len(PALETTE)))]
        objects.append(SceneObject(id="", shape=shape, colour=colour, size=size, side=0))
    return [objects[i] for i in rng.permutation(count)]


def _distinct_tiny(rng, tiny: list[SceneObject]) -> None:
    """No two tiny objects share a colour, nor a shape (text plates excepted, which are all squares).

    Tiny objects are all solid, so without this "the tiny star" would often match two objects and
    the question would be dropped, starving the tiny share for single-kind sets such as colour only.
    """
    shapes: set[str] = set()
    colours: set[str] = set()
    for o in tiny:
        free_shapes = [s for s in SHAPES if s not in shapes]
        if o.text is None and o.shape in shapes and free_shapes:
            o.shape = free_shapes[int(rng.integers(len(free_shapes)))]
        free_colours = [c for c in PALETTE if c not in colours]
        if o.colour in colours and free_colours:
            o.colour = free_colours[int(rng.integers(len(free_colours)))]
        shapes.add(o.shape)
        colours.add(o.colour)


def _pick(rng, objects: list[SceneObject], k: int) -> list[SceneObject]:
    return [objects[i] for i in rng.permutation(len(objects))[: min(k, len(objects))]]


def _sample_side(rng, size: str, m: int, text: bool) -> int:
    if size == "tiny":
        low, high = TINY_TEXT_SIDE if text else TINY_SIDE
    elif size == "small":
        low, high = max(20, round(0.035 * m)), max(24, round(0.09 * m))
    else:
        low, high = round(0.12 * m), round(0.25 * m)
    return int(rng.integers(low, high + 1))


def _sample_text(rng, o: SceneObject) -> tuple[str, int]:
    """A word or 1-3 digits and the largest font that fits the plate; shorter text when it does not.

    Tiny plates hold one digit: readable in a zoomed crop, a speck in the full view.
    """
    candidates = []
    if o.size != "tiny":
        if rng.random() < 0.5:
            candidates.append(WORDS[int(rng.integers(len(WORDS)))])
        candidates.append(_digits(rng, int(rng.integers(1, 4))))
        candidates.append(_digits(rng, int(rng.integers(1, 3))))
    candidates.append(_digits(rng, 1))
    room = TEXT_ROOM[o.shape] * o.side
    smallest = TINY_FONT if o.size == "tiny" else MIN_FONT
    largest = max(smallest + 1, int(0.45 * o.side))
    for text in candidates:
        for size in range(largest, smallest - 1, -1):
            left, top, right, bottom = font(size).getbbox(text)
            if right - left <= room and bottom - top <= room:
                return text, size
    raise AssertionError(f"no text fits a {o.side}px {o.shape}")  # sides are chosen so one digit fits


def _digits(rng, length: int) -> str:
    """Digits without a leading zero, so that '7' and '07' never both count as right."""
    first = str(int(rng.integers(1, 10)))
    return first + "".join(str(int(d)) for d in rng.integers(0, 10, size=length - 1))


@functools.cache
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font: offline, and identical wherever the same Pillow is installed."""
    return ImageFont.load_default(size=size)


def _place(rng, objects: list[SceneObject], width: int, height: int) -> bool:
    """Reject-sample positions, biggest first, keeping ``gap`` px between nominal squares."""
    space = gap(width, height)
    placed: list[tuple[int, int, int]] = []
    for o in sorted(objects, key=lambda o: -o.side):
        for _ in range(300):
            x = int(rng.integers(space, width - o.side - space + 1))
            y = int(rng.integers(space, height - o.side - space + 1))
            if all(
                x + o.side + space <= px
                or px + ps + space <= x
                or y + o.side + space <= py
                or py + ps + space <= y
                for px, py, ps in placed
            ):
                break
        else:
            return False
        placed.append((x, y, o.side))
        o.origin = (x, y)
        _shape_mask(o)
    return True


def _unit_polygon(shape: str) -> list[tuple[float, float]]:
    if shape == "square":
        return [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    if shape == "diamond":
        return [(0, -1), (1, 0), (0, 1), (-1, 0)]
    if shape == "triangle":
        return [(0, -1), (1, 1), (-1, 1)]
    if shape == "hexagon":
        return [(math.cos(a), math.sin(a)) for a in (math.radians(-90 + 60 * k) for k in range(6))]
    if shape == "star":
        return [
            (r * math.cos(a), r * math.sin(a))
            for k in range(10)
            for r, a in [(1.0 if k % 2 == 0 else 0.45, math.radians(-90 + 36 * k))]
        ]
    raise ValueError(f"no polygon for shape {shape!r}")


def _shape_mask(o: SceneObject) -> None:
    """Rasterise the shape in its nominal square; the largest extent is exactly ``side`` px.

    Polygons are drawn with integer vertices and the same PIL call a COCO polygon decoder uses, so
    the written polygon decodes to exactly these pixels.
    """
    s, (x0, y0) = o.side, o.origin
    canvas = Image.new("1", (s, s), 0)
    draw = ImageDraw.Draw(canvas)
    if o.shape == "circle":
        draw.ellipse((0, 0, s - 1, s - 1), fill=1, outline=1)
        o.polygon = None
    else:
        points = _unit_polygon(o.shape)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        span = max(max(xs) - min(xs), max(ys) - min(ys))
        scale = (s - 1) / span
        dx = (s - 1 - (max(xs) - min(xs)) * scale) / 2
        dy = (s - 1 - (max(ys) - min(ys)) * scale) / 2
        local = [(round((x - min(xs)) * scale + dx), round((y - min(ys)) * scale + dy)) for x, y in points]
        draw.polygon(local, fill=1, outline=1)
        o.polygon = [v for x, y in local for v in (x + x0, y + y0)]
    mask = np.asarray(canvas, dtype=bool)
    rows, cols = np.nonzero(mask)
    r1, r2, c1, c2 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    o.mask = mask[r1:r2, c1:c2].copy()
    o.box = (x0 + c1, y0 + r1, x0 + c2, y0 + r2)


def _background_colour(rng) -> tuple[int, int, int]:
    base = int(rng.integers(228, 246))
    tint = rng.integers(-5, 6, size=3)
    return tuple(int(v) for v in np.clip(base + tint, 0, 255))
