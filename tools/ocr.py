"""``OcrTool``: text lines found and read by RapidOCR (PP-OCRv4 ONNX models shipped in its wheel).

Each text line is one region: its detected quadrilateral becomes the enclosing xyxy box, the label
is the recognised string, the score the recogniser's confidence.

Targets: when given, only lines whose text contains a target are kept, compared case- and
space-insensitively (the recogniser often drops spaces: "SRICE 2026" can come back "SRICE2026"). If
no line matches, all lines are returned: the MLLM's targets for an OCR pathway are usually the thing
that carries the text ("the sign", "the price tag"), not the text itself, which is what the question
is about; an empty answer there would throw the evidence away. ``meta["matched"]`` says which case
applied.

Runs through onnxruntime: on the CPU, or on the first GPU (``device`` cuda / cuda:0) where
``onnxruntime-gpu`` provides the CUDA execution provider; a CUDA device it cannot use is said once on
stderr and the tool runs on the CPU (RapidOCR's CUDA option knows no other GPU than the first).
``det_limit_side_len`` caps the detector's input (longer side), the
~10x faster setting measured here. Batches are a loop: RapidOCR has no multi-image call.
"""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image

from srice.devices import check_device, resolve_device
from srice.errors import ToolError, require
from srice.tools.base import BaseTool
from srice.tools.regions import Regions


def _squash(text: str) -> str:
    return "".join(text.split()).casefold()


class OcrTool(BaseTool):
    """RapidOCR text lines as regions; see the module docstring for the target rule."""

    name = "ocr"
    reads_text = True  # the agent gives the model the strings of the regions it shows

    def __init__(
        self,
        *,
        det_limit_side_len: int = 960,
        text_score: float = 0.5,
        use_cls: bool = True,
        device: str = "auto",
    ) -> None:
        if det_limit_side_len < 32:
            raise ValueError(f"det_limit_side_len must be at least 32, got {det_limit_side_len}")
        self.det_limit_side_len = int(det_limit_side_len)
        self.text_score = float(text_score)
        self.use_cls = bool(use_cls)
        self.device = check_device(device)
        self._engine = None

    def uses_cuda(self) -> bool:
        """Whether onnxruntime runs the OCR models on the GPU for ``self.device``; when the device is
        a GPU it cannot use, says why on stderr (the tool then runs on the CPU)."""
        device = resolve_device(self.device)
        if device == "cpu":
            return False
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            why = f"onnxruntime {onnxruntime.__version__} has no CUDA provider (install onnxruntime-gpu)"
        elif device != "cuda:0":
            why = f"RapidOCR uses only the first GPU (cuda:0), not {device}"
        else:
            return True
        print(f"srice: ocr runs on the CPU: {why}", file=sys.stderr, flush=True)
        return False

    @property
    def engine(self):
        if self._engine is None:
            rapidocr = require("rapidocr_onnxruntime", "rapidocr-onnxruntime", "the ocr tool", ToolError)
            cuda = self.uses_cuda()
            try:
                self._engine = rapidocr.RapidOCR(
                    det_use_cuda=cuda,
                    cls_use_cuda=cuda,
                    rec_use_cuda=cuda,
                    det_limit_type="max",
                    det_limit_side_len=self.det_limit_side_len,
                    text_score=self.text_score,
                    use_cls=self.use_cls,
                )
            except Exception as e:  # missing/corrupt model files inside the wheel, onnxruntime errors
                raise ToolError(f"cannot start RapidOCR: {type(e).__name__}: {e}") from None
        return self._engine

    def _run(self, images: list[Image.Image], targets: list[tuple[str, ...]]) -> list[Regions]:
        return [self._one(image, t) for image, t in zip(images, targets)]

    def _one(self, image: Image.Image, targets: tuple[str, ...]) -> Regions:
        bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])  # RapidOCR takes arrays as BGR
        try:
            lines, _ = self.engine(bgr)
        except Exception as e:  # onnxruntime and OpenCV raise their own types
            raise ToolError(f"OCR failed: {type(e).__name__}: {e}") from None
        lines = lines or []
        boxes = np.array([[*np.min(q, axis=0), *np.max(q, axis=0)] for q, _, _ in lines], dtype=np.float64)
        texts = tuple(str(text) for _, text, _ in lines)
        scores = np.array([float(score) for _, _, score in lines], dtype=np.float64)
        meta: dict = {"targets": list(targets)}
        regions = Regions(boxes.reshape(-1, 4), scores, texts, image.size, self.name, None, meta).clipped()
        if not targets or not len(regions):
            meta["matched"] = "all" if not targets else "none"
            return regions.replace(meta=meta)
        wanted = [_squash(t) for t in targets]
        keep = np.array([any(w in _squash(text) for w in wanted) for text in texts])
        if keep.any():
            meta["matched"] = "targets"
            return regions.select(keep).replace(meta=meta)
        meta["matched"] = "none: all texts returned"
        return regions.replace(meta=meta)
