"""Synthetic calibration data: a simulated detector/segmenter with known error behaviour.

Used by the tests (coverage over many seeds) and handy for demos of ``srice calibrate``. Each image
has a Poisson number of true objects of varied sizes (log-uniform), fully inside the image. The
simulated tool

* misses each object with a probability that is higher for small objects (``miss``),
* otherwise reports its box with each edge jittered by Gaussian noise proportional to the object's
  width/height (``jitter``), usually with the right label (``mislabel`` flips it), with a score drawn
  from Beta(6, 2) (high),
* sometimes reports the same object twice (``duplicate``, a lower-scored copy: a false positive under
  one-to-one matching),
* adds a Poisson number of false positives at random places with Beta(2, 5) scores (low-ish).

With ``with_masks`` the true masks are ellipses inscribed in the true boxes, and the predicted masks
ellipses inscribed in the predicted boxes, eroded by 0..``erode`` pixels (so the predictions are
both shifted and too small, which is what dilation must fix).

Objects and errors are independent across objects and images, which is the setting in which every
calibrator's guarantee holds exactly.
"""

from __future__ import annotations

import numpy as np

from srice.tools.regions import Regions

from .matching import Example, GroundTruth

LABELS = ("cat", "dog", "car")


def ellipse_masks(
    boxes: np.ndarray, image_size: tuple[int, int], shrink: np.ndarray | None = None
) -> np.ndarray:
    """(k, height, width) masks of the ellipses inscribed in ``boxes`` (pixel centres inside)."""
    width, height = image_size
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    shrink = np.zeros(len(boxes)) if shrink is None else np.asarray(shrink, dtype=np.float64)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    rx = ((boxes[:, 2] - boxes[:, 0]) / 2 - shrink).clip(1e-6)
    ry = ((boxes[:, 3] - boxes[:, 1]) / 2 - shrink).clip(1e-6)
    xs = np.arange(width) + 0.5
    ys = np.arange(height) + 0.5
    dx = (xs[None, None, :] - cx[:, None, None]) / rx[:, None, None]
    dy = (ys[None, :, None] - cy[:, None, None]) / ry[:, None, None]
    return dx**2 + dy**2 <= 1.0


def synthetic_examples(
    n: int,
    seed: int = 0,
    *,
    image_size: tuple[int, int] = (320, 240),
    objects: float = 2.0,
    size_range: tuple[float, float] = (12.0, 120.0),
    miss: float = 0.02,
    jitter: float = 0.06,
    mislabel: float = 0.01,
    duplicate: float = 0.05,
    false_positives: float = 0.7,
    with_masks: bool = False,
    erode: int = 3,
    tool: str = "synthetic",
) -> list[Example]:
    """``n`` simulated (prediction, ground truth) images; the same seed gives the same data.

    Everything is drawn for all images at once and then split per image (fast enough for tests that
    calibrate hundreds of times).
    """
    rng = np.random.default_rng(seed)
    width, height = image_size
    lo, hi = np.log(size_range[0]), np.log(min(size_range[1], width, height))
    n_labels = len(LABELS)

    def random_boxes(count: int) -> np.ndarray:
        w = np.exp(rng.uniform(lo, hi, count))
        h = (w * np.exp(rng.uniform(-0.4, 0.4, count))).clip(size_range[0] / 2, height)
        x1, y1 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        return np.stack([x1, y1, x1 + w, y1 + h], axis=1)

    # true objects
    k = rng.poisson(objects, n)
    truth_image = np.repeat(np.arange(n), k)
    truth_boxes = random_boxes(int(k.sum()))
    truth_labels = rng.integers(0, n_labels, len(truth_boxes))
    w, h = truth_boxes[:, 2] - truth_boxes[:, 0], truth_boxes[:, 3] - truth_boxes[:, 1]
    scale = np.stack([w, h, w, h], axis=1)

    # detections of true objects: small ones are missed more often
    p_miss = (miss * 2 * size_range[0] / np.sqrt(w * h)).clip(0, 0.9) + miss / 2
    hit = np.flatnonzero(rng.random(len(truth_boxes)) >= p_miss)
    det_boxes = truth_boxes[hit] + rng.normal(0, jitter, (len(hit), 4)) * scale[hit]
    det_labels = np.where(
        rng.random(len(hit)) < mislabel, rng.integers(0, n_labels, len(hit)), truth_labels[hit]
    )
    det_scores = rng.beta(6, 2, len(hit))
    # duplicates: a lower-scored, more jittered second detection
    dup = hit[rng.random(len(hit)) < duplicate]
    dup_index = np.searchsorted(hit, dup)
    dup_boxes = det_boxes[dup_index] + rng.normal(0, jitter, (len(dup), 4)) * scale[dup]
    dup_scores = det_scores[dup_index] * rng.uniform(0.3, 0.9, len(dup))
    # false positives
    f = rng.poisson(false_positives, n)
    fp_boxes = random_boxes(int(f.sum()))

    image = np.concatenate([truth_image[hit], truth_image[dup], np.repeat(np.arange(n), f)])
    boxes = np.concatenate([det_boxes, dup_boxes, fp_boxes]).reshape(-1, 4)
    boxes = np.concatenate(
        [np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], 1
    )
    scores = np.concatenate([det_scores, dup_scores, rng.beta(2, 5, len(fp_boxes))])
    labels = np.concatenate([det_labels, det_labels[dup_index], rng.integers(0, n_labels, len(fp_boxes))])
    order = np.argsort(image, kind="stable")
    image, boxes, scores, labels = image[order], boxes[order], scores[order], labels[order]
    pred_masks = truth_masks = None
    if with_masks:
        truth_masks = ellipse_masks(truth_boxes, image_size)
        pred_masks = ellipse_masks(boxes, image_size, rng.integers(0, erode + 1, len(boxes)))

    predicted = (image, boxes, scores, labels, pred_masks)
    return _per_image(n, predicted, (k, truth_boxes, truth_labels, truth_masks), image_size, tool)


def _per_image(
    n: int, predicted: tuple, truth: tuple, image_size: tuple[int, int], tool: str
) -> list[Example]:
    """The drawn arrays split into one Example per image: ``predicted`` (image index, boxes, scores,
    labels, masks), sorted by image, and ``truth`` (objects per image, boxes, labels, masks)."""
    image, boxes, scores, labels, pred_masks = predicted
    k, truth_boxes, truth_labels, truth_masks = truth
    t_ends = np.cumsum(k)
    p_ends = np.cumsum(np.bincount(image, minlength=n))
    out = []
    for i in range(n):
        t = slice(t_ends[i] - k[i], t_ends[i])
        p = slice(p_ends[i - 1] if i else 0, p_ends[i])
        pred = Regions(
            boxes[p],
            scores[p],
            tuple(LABELS[j] for j in labels[p]),
            image_size,
            tool,
            None if pred_masks is None else pred_masks[p],
        )
        gt = GroundTruth(
            truth_boxes[t],
            tuple(LABELS[j] for j in truth_labels[t]),
            image_size,
            None if truth_masks is None else truth_masks[t],
        )
        out.append(Example(pred, gt))
    return out
