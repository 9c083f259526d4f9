"""COCO loading; pycocotools is the reference for the compressed-RLE decoder."""

import json

import numpy as np
import pycocotools.mask as reference
import pytest

from srice.calibration.coco import (
    decode_segmentation,
    load_coco,
    rle_counts_from_string,
    rle_string_from_counts,
)
from srice.errors import InputError


def _random_masks(seed: int, n: int = 25):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        h, w = rng.integers(1, 60, size=2)
        mask = np.zeros((h, w), dtype=np.uint8)
        for _ in range(rng.integers(0, 4)):
            y, x = rng.integers(0, h), rng.integers(0, w)
            mask[y : y + rng.integers(1, 30), x : x + rng.integers(1, 30)] = 1
        yield np.asfortranarray(mask)


def test_compressed_rle_matches_pycocotools():
    for mask in _random_masks(0):
        encoded = reference.encode(mask)
        text = encoded["counts"].decode()
        decoded = decode_segmentation({"size": encoded["size"], "counts": text}, mask.shape[1], mask.shape[0])
        assert np.array_equal(decoded, mask.astype(bool))
        assert rle_string_from_counts(rle_counts_from_string(text)) == text


def test_polygon_and_uncompressed_rle_and_bbox_fallback():
    poly = decode_segmentation([[2, 2, 8, 2, 8, 6, 2, 6]], 10, 8)
    assert poly[3, 5] and not poly[0, 0] and poly.sum() == 7 * 5  # PIL fills the outline too
    rle = decode_segmentation({"size": [2, 3], "counts": [1, 2, 3]}, 3, 2)
    assert rle.tolist() == [[False, True, False], [True, False, False]]  # runs go down columns
    box = decode_segmentation(None, 10, 10, bbox=[1, 2, 3, 4])
    assert box.sum() == 12 and box[2, 1] and not box[6, 1]
    with pytest.raises(ValueError, match="RLE covers"):
        decode_segmentation({"size": [2, 3], "counts": [1, 2]}, 3, 2)


def test_load_coco(tmp_path):
    data = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 20, "height": 10},
            {"id": 2, "file_name": "b.png", "width": 20, "height": 10},
        ],
        "categories": [{"id": 3, "name": "cat"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 3,
                "bbox": [1, 2, 4, 5],
                "segmentation": [[1, 2, 5, 2, 5, 7]],
            },
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 20, 10], "iscrowd": 1},
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    records = load_coco(path, tmp_path, masks=True)
    assert [r.path.name for r in records] == ["a.png", "b.png"]
    assert records[0].truth.boxes.tolist() == [[1, 2, 5, 7]] and records[0].truth.labels == ("cat",)
    assert records[0].truth.masks.shape == (1, 10, 20) and records[0].truth.masks.any()
    assert len(records[1].truth.boxes) == 0  # crowd regions are not objects to find
    assert load_coco(path, tmp_path)[0].truth.masks is None


@pytest.mark.parametrize(
    "content, message",
    [
        ("{oops", "not valid JSON"),
        ('{"annotations": []}', "needs an 'images' list"),
        ('{"images": [{"id": 1, "file_name": "a.png"}]}', "malformed COCO entry"),
        (
            '{"images": [{"id": 1, "file_name": "a", "width": 4, "height": 4}], '
            '"annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 2]}]}',
            "negative bbox",
        ),
    ],
)
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "ann.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_coco(path, tmp_path)
    with pytest.raises(InputError, match="not found"):
        load_coco(tmp_path / "missing.json", tmp_path)
