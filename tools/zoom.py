"""``ZoomTool``: the zero-cost baseline pathway — fixed grid cells, no model, targets ignored.

A ``grid`` of ``rows x cols`` equal cells (``grid=2``: the four quadrants), each a region with score
1.0 and label ``"cell r,c"`` (0-based row, column; row 0 at the top), in row-major order. Cell edges
are ``c * width / cols`` and ``r * height / rows`` exactly (floats, so cells tile the image with no
gap or overlap). ``centre=True`` adds one more region, ``"centre"``: a cell-sized box centred on the
image. Useful alone (the MLLM sees each quadrant zoomed) and as the pathway every tool must beat.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from srice.tools.base import BaseTool
from srice.tools.regions import Regions


class ZoomTool(BaseTool):
    """Fixed grid cells (and optionally the centre) as regions."""

    name = "zoom"
    separate_views = True  # the agent zooms into each cell on its own: the union of a grid is the image

    def __init__(self, *, grid: int | tuple[int, int] = 2, centre: bool = False) -> None:
        rows, cols = (grid, grid) if isinstance(grid, int) else tuple(grid)
        if int(rows) < 1 or int(cols) < 1:
            raise ValueError(f"grid must be at least 1x1, got {grid!r}")
        self.rows, self.cols, self.centre = int(rows), int(cols), bool(centre)

    def cells(self, width: int, height: int) -> Regions:
        """The regions for an image of this size."""
        boxes, labels = [], []
        for r in range(self.rows):
            for c in range(self.cols):
                boxes.append(
                    (
                        c * width / self.cols,
                        r * height / self.rows,
                        (c + 1) * width / self.cols,
                        (r + 1) * height / self.rows,
                    )
                )
                labels.append(f"cell {r},{c}")
        if self.centre:
            w, h = width / self.cols, height / self.rows
            boxes.append(((width - w) / 2, (height - h) / 2, (width + w) / 2, (height + h) / 2))
            labels.append("centre")
        meta = {"grid": [self.rows, self.cols], "centre": self.centre}
        return Regions(
            np.array(boxes), np.ones(len(boxes)), tuple(labels), (width, height), self.name, None, meta
        )

    def _run(self, images: list[Image.Image], targets: list[tuple[str, ...]]) -> list[Regions]:
        return [self.cells(*image.size) for image in images]
