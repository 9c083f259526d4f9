import io

import numpy as np
import pytest
from PIL import Image

from srice.errors import InputError
from srice.images import check_question, load_image


def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def test_unreadable_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="image not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="0 bytes"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("not an image at all")
    with pytest.raises(InputError, match="not a readable image"):
        load_image(tmp_path / "text.png")
    with pytest.raises(InputError, match="is a folder"):
        load_image(tmp_path)


def test_truncated_file_is_corrupt(tmp_path):
    data = _png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt image"):
        load_image(tmp_path / "cut.png")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    # 20000 x 20000 one-bit PNG: ~50 KB on disk, 400 M pixels if decoded
    bomb = Image.new("1", (20000, 20000))
    path = tmp_path / "bomb.png"
    bomb.save(path, optimize=True)
    assert path.stat().st_size < 2_000_000
    with pytest.raises(InputError, match="too large.*400000000 pixels"):
        load_image(path)
    with pytest.raises(InputError, match="too large: 9000x9000"):  # under PIL's guard, over ours
        load_image(Image.new("1", (9000, 9000)))


@pytest.mark.parametrize("mode", ["P", "PA", "LA", "L", "CMYK", "RGBA", "1", "I;16", "I", "F"])
def test_odd_modes_are_converted_to_rgb(mode, tmp_path):
    base = Image.new("RGB", (40, 30), (200, 40, 40))
    if mode == "I;16":
        image = Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16))
    elif mode in ("I", "F"):
        image = Image.fromarray(np.full((30, 40), 1000, dtype=np.int32 if mode == "I" else np.float32))
    elif mode in ("P", "PA"):
        image = base.convert("P", palette=Image.Palette.ADAPTIVE).convert(mode)
    else:
        image = base.convert(mode)
    out = load_image(image)
    assert out.mode == "RGB" and out.size == (40, 30)
    if mode == "I;16":  # scaled, not clipped: 40000/65535 of full scale
        assert out.getpixel((0, 0)) == (156, 156, 156)
    if mode in ("P", "RGBA", "CMYK"):
        assert np.abs(np.asarray(out, dtype=int) - (200, 40, 40)).max() <= 12


def test_transparency_is_flattened_onto_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert load_image(image).getpixel((0, 0)) == (255, 255, 255)


def test_16bit_png_file_round_trip(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64)).save(path)
    out = np.asarray(load_image(path))
    assert out.min() == 0 and out.max() == 255 and out.shape == (64, 64, 3)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    data = io.BytesIO()
    image.save(data, format="JPEG", exif=exif)
    assert load_image(data.getvalue()).size == (20, 40)


def test_questions():
    assert check_question("  What colour?  ") == "What colour?"
    for bad in ("", "   \n"):
        with pytest.raises(InputError, match="question is empty"):
            check_question(bad)
    with pytest.raises(InputError, match="too long"):
        check_question("why " * 2000)


def test_only_regular_files_of_bounded_size_are_read(tmp_path):
    """A FIFO would block the read forever, /dev/zero would fill memory: neither is a regular file.
    A file over the byte limit is refused from its size, before it is read."""
    import os
    import threading

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    done = threading.Event()
    errors = []

    def read():
        try:
            load_image(fifo)
        except InputError as e:
            errors.append(str(e))
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(5), "reading a FIFO blocked"
    assert "not a regular file" in errors[0]
    with pytest.raises(InputError, match="not a regular file"):
        load_image("/dev/zero")
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(65 * 1024 * 1024)  # sparse: 65 MB on paper
    with pytest.raises(InputError, match="image file too large: 65.0 MB > limit"):
        load_image(big)
