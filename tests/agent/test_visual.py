"""Visual prompts: exact crop geometry (borders, corners, degenerate and outside boxes) and drawing."""

import numpy as np
import pytest
from PIL import Image

from srice.agent.visual import Crop, crop_regions, crop_window, draw_regions, label_colour
from srice.errors import InputError
from srice.tools.regions import Regions

W, H = 640, 480


def regions(*boxes, size=(W, H), labels=None, masks=None) -> Regions:
    labels = labels or tuple(f"r{i}" for i in range(len(boxes)))
    return Regions(
        np.array(boxes, dtype=float).reshape(-1, 4), np.full(len(boxes), 0.9), labels, size, "t", masks
    )


def gradient(width=W, height=H) -> Image.Image:
    x = np.arange(width)[None, :].repeat(height, 0)
    y = np.arange(height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8))


def window(*boxes, size=(W, H), **kw):
    return crop_window(size, np.array(boxes, dtype=float).reshape(-1, 4), **kw)[0]


def test_no_regions_is_the_whole_image_resized():
    crop = crop_regions(gradient(), Regions.empty((W, H)))
    assert isinstance(crop, Crop) and crop.box == (0, 0, W, H) and crop.n_regions == 0
    assert crop.image.size == (448, 336)


def test_single_tiny_box_gets_a_min_side_square():
    assert window((100, 100, 104, 104)) == (70, 70, 134, 134)
    crop = crop_regions(gradient(), regions((100, 100, 104, 104)))
    assert crop.box == (70, 70, 134, 134) and crop.image.size == (448, 448) and crop.n_regions == 1
    assert crop.scale == 7.0


def test_union_of_several_boxes_with_context():
    # union (100, 100, 340, 260): 240 x 160, padded by 60 and 40 on each side
    assert window((100, 100, 200, 150), (300, 200, 340, 260)) == (40, 60, 400, 300)
    assert window((100, 100, 200, 150), (300, 200, 340, 260), context=0.0) == (100, 100, 340, 260)
    assert window((100, 100, 200, 150), (300, 200, 340, 260), context=0.5) == (
        0,
        20,
        480,
        340,
    )  # shifted right, not shrunk


def test_clamping_shifts_the_window_inside_at_each_border():
    assert window((0, 100, 40, 140)) == (0, 88, 64, 152)  # left
    assert window((600, 100, 640, 140)) == (576, 88, 640, 152)  # right
    assert window((300, 0, 340, 40)) == (288, 0, 352, 64)  # top
    assert window((300, 440, 340, 480)) == (288, 416, 352, 480)  # bottom


def test_clamping_at_each_corner_keeps_the_full_window():
    assert window((0, 0, 10, 10)) == (0, 0, 64, 64)
    assert window((630, 0, 640, 10)) == (576, 0, 640, 64)
    assert window((0, 470, 10, 480)) == (0, 416, 64, 480)
    assert window((630, 470, 640, 480)) == (576, 416, 640, 480)
    # a big box in a corner: the padded window is shifted, not clipped (300 x 150 stays 300 x 150)
    assert window((440, 380, 640, 480)) == (340, 330, 640, 480)


def test_window_larger_than_the_image_becomes_the_image_along_that_axis():
    assert window((10, 10, 90, 40), size=(100, 50), min_side=16) == (0, 2, 100, 48)
    assert window((10, 10, 90, 40), size=(100, 50)) == (0, 0, 100, 50)  # 64 > 50
    assert window((20, 20, 20, 20), size=(50, 40)) == (0, 0, 50, 40)  # min_side beyond the image


def test_degenerate_boxes():
    assert window((100, 100, 100, 200)) == (68, 75, 132, 225)  # zero width
    assert window((100, 100, 300, 100)) == (50, 68, 350, 132)  # zero height
    assert window((200, 150, 200, 150)) == (168, 118, 232, 182)  # a point
    assert window((0, 0, 0, 0)) == (0, 0, 64, 64)  # a point at the corner
    assert window((W, H, W, H)) == (W - 64, H - 64, W, H)  # a point at the far corner (touching counts)
    assert window((100.5, 100.5, 103.25, 103.25), context=0, min_side=3) == (100, 100, 104, 104)  # outwards


def test_boxes_outside_the_image():
    crop = crop_regions(gradient(), regions((700, 10, 720, 30), (-50, -50, -10, -10)))
    assert crop.box == (0, 0, W, H) and crop.n_regions == 0
    # one outside, one inside: only the inside one counts
    assert crop_window((W, H), np.array([[700, 10, 720, 30], [100, 100, 104, 104]], float)) == (
        (70, 70, 134, 134),
        1,
    )
    assert window((-20, -20, 20, 20)) == (0, 0, 64, 64)  # partly outside: clipped first
    assert window((600, 400, 900, 700)) == (576, 360, 640, 480)  # clipped to (600, 400, 640, 480) first


def test_upscale_keeps_aspect_and_pixels():
    image = gradient()
    crop = crop_regions(image, regions((100, 100, 200, 150), (300, 200, 340, 260)))
    assert crop.box == (40, 60, 400, 300)
    assert crop.image.size == (448, 299)  # 360 x 240 -> 448 x 298.67
    assert abs(crop.image.width / crop.image.height - 360 / 240) < 0.01
    tall = crop_regions(image, regions((10, 10, 30, 400)), context=0.0, min_side=1, out_size=390)
    assert tall.box == (10, 10, 30, 400) and tall.image.size == (20, 390)
    exact = crop_regions(image, regions((100, 100, 104, 104)), out_size=64)  # no resize: same pixels
    assert exact.image.size == (64, 64)
    np.testing.assert_array_equal(np.asarray(exact.image), np.asarray(image.crop((70, 70, 134, 134))))
    assert exact.to_crop(102, 102) == (32.0, 32.0)


def test_one_resize_from_the_source_with_reduction_for_large_shrinks():
    """Cut and resized in one step (``Image.resize`` with ``box``): the same pixels as cropping then
    resizing where the shrink is under ``REDUCING_GAP``; larger shrinks reduce first (fast, close)."""
    image = gradient(1600, 1200)
    crop = crop_regions(image, Regions.empty((1600, 1200)), out_size=800)  # a 2x shrink: exact
    two_steps = image.resize((800, 600), Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(np.asarray(crop.image), np.asarray(two_steps))
    small = crop_regions(image, Regions.empty((1600, 1200)), out_size=160)  # 10x: reduced first
    exact = np.asarray(image.resize((160, 120), Image.Resampling.BICUBIC), dtype=float)
    assert small.image.size == (160, 120)
    assert np.abs(np.asarray(small.image, dtype=float) - exact).mean() < 8


def test_max_pixels_caps_the_crop_area_aspect_kept():
    """``max_pixels``: the model's per-image pixel budget; a crop is never made larger than that."""
    image = gradient()
    capped = crop_regions(image, regions((100, 100, 104, 104)), max_pixels=196 * 196)
    assert capped.box == (70, 70, 134, 134) and capped.image.size == (196, 196)
    wide = crop_regions(image, Regions.empty((W, H)), max_pixels=196 * 196)  # 448 x 336 is over it
    assert wide.image.width * wide.image.height <= 196 * 196 and wide.box == (0, 0, W, H)
    assert wide.image.size == (226, 169) and abs(wide.image.width / wide.image.height - W / H) < 0.01
    roomy = crop_regions(image, regions((100, 100, 104, 104)), max_pixels=1000 * 1000)  # no effect
    assert roomy.image.size == (448, 448)
    with pytest.raises(ValueError):
        crop_regions(image, regions((1, 1, 2, 2)), max_pixels=0)


def test_bad_inputs():
    with pytest.raises(InputError, match="320x240"):
        crop_regions(gradient(), regions((1, 1, 2, 2), size=(320, 240)))
    with pytest.raises(ValueError):
        crop_regions(gradient(), regions((1, 1, 2, 2)), out_size=0)
    with pytest.raises(InputError, match="PIL image"):
        draw_regions(np.zeros((H, W, 3)), regions((1, 1, 2, 2)))


def test_draw_boxes_masks_and_labels():
    image = Image.new("RGB", (200, 150), (255, 255, 255))
    mask = np.zeros((2, 150, 200), bool)
    mask[0, 60:100, 60:100] = True
    found = regions(
        (50, 50, 110, 110), (120, 20, 180, 60), size=(200, 150), labels=("car", "dog"), masks=mask
    )
    drawn = draw_regions(image, found)
    assert drawn.size == image.size and drawn is not image
    assert np.asarray(image).min() == 255  # the original is untouched
    pixels = np.asarray(drawn)
    car, dog = label_colour("car"), label_colour("dog")
    assert car != dog and label_colour("car") == car
    assert tuple(pixels[80, 50]) == car  # left edge of the car box
    assert tuple(pixels[40, 179]) == dog  # right edge of the dog box (x2 - 1)
    tint = pixels[80, 80].astype(int)  # inside the mask: white blended towards the car colour
    assert np.all(tint <= 255) and tint.sum() < 3 * 255
    assert np.abs(tint - (0.6 * 255 + 0.4 * np.array(car))).max() <= 2
    plain = np.asarray(draw_regions(image, found, labels=False))
    label_band = (slice(20, 50), slice(50, 110))  # above the car box, where its label goes
    assert (plain[label_band] == 255).all() and not (pixels[label_band] == 255).all()


def test_draw_degenerate_and_outside_boxes_and_determinism():
    image = gradient(100, 80)
    odd = regions((10, 10, 10, 40), (50, 50, 50, 50), (90, 70, 300, 300), (-20, -20, -5, -5), size=(100, 80))
    first, second = draw_regions(image, odd), draw_regions(image, odd)
    assert first.size == (100, 80)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
