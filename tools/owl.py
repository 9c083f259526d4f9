"""``OwlTool``: OWLv2 open-vocabulary detection through transformers; the targets are the text queries.

Why OWLv2 rather than Grounding DINO: OWLv2 scores every (box, query) pair independently with a
sigmoid, so each box's score is a per-query confidence that conformal calibration can threshold
directly and queries do not compete inside one caption; it has a class-agnostic objectness head that
serves "find everything" (empty targets) without inventing a vocabulary; and its ~2 k patch boxes
cost one ViT pass with no decoder, the cheaper of the two on CPU.

Per image: the model scores every patch box against every query; transformers'
``post_process_object_detection`` keeps, per box, its best query and that query's sigmoid score
(one score and one label per box), scales boxes to pixels (OWLv2 pads images to a square at the
bottom/right, so boxes scale by the longer side), and applies ``threshold``. We then drop boxes
wholly in that padding, clip the rest to the image, run per-label NMS (``nms_iou``; OWLv2 predicts
one box per patch, so neighbours overlap) and keep the ``max_det`` best. Labels are the target
phrases. With empty targets the scores are OWLv2's objectness and every label is ``"object"``.
Queries longer than the text tower's context (16 tokens for the released models) are truncated.

Weights: a local folder in Hugging Face format (``srice.builtin.tiny_tools.tiny_owl`` builds one), or a hub
name. ``weights=None`` means ``google/owlv2-base-patch16-ensemble`` from the local Hugging Face cache
only; a hub name given explicitly may be downloaded (unless ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from PIL import Image

from srice.devices import check_device, resolve_device
from srice.errors import ToolError, require
from srice.tools.base import BaseTool
from srice.tools.regions import Regions

DEFAULT_WEIGHTS = "google/owlv2-base-patch16-ensemble"
OBJECT_LABEL = "object"


class OwlTool(BaseTool):
    """OWLv2 zero-shot detection; see the module docstring."""

    name = "owl"

    def __init__(
        self,
        *,
        weights: str | os.PathLike | None = None,
        threshold: float = 0.1,
        nms_iou: float = 0.3,
        max_det: int = 100,
        device: str = "auto",
        batch_size: int = 4,
    ) -> None:
        if not 0.0 <= threshold <= 1.0 or not 0.0 <= nms_iou <= 1.0:
            raise ValueError(f"threshold and nms_iou must lie in [0, 1], got {threshold}, {nms_iou}")
        if batch_size < 1 or max_det < 1:
            raise ValueError("batch_size and max_det must be positive")
        self.weights = None if weights is None else str(weights)
        self.threshold, self.nms_iou, self.max_det = float(threshold), float(nms_iou), int(max_det)
        self.device, self.batch_size = check_device(device), int(batch_size)
        self._loaded = None

    def _load(self):
        if self._loaded is None:
            transformers = require("transformers", "transformers", "the owl tool", ToolError)
            source = self.weights or DEFAULT_WEIGHTS
            path = Path(source).expanduser()
            if path.exists():
                if not path.is_dir():
                    raise ToolError(
                        f"OWLv2 weights must be a model folder (Hugging Face format), got a file: {path}"
                    )
                source, local = str(path), True
            elif path.is_absolute() or source.startswith((".", "~")) or source.count("/") > 1:
                raise ToolError(f"OWLv2 weights folder not found: {path}")
            else:
                local = self.weights is None  # the default is never downloaded implicitly
            device = resolve_device(self.device)
            try:
                processor = transformers.Owlv2Processor.from_pretrained(source, local_files_only=local)
                model = transformers.Owlv2ForObjectDetection.from_pretrained(source, local_files_only=local)
            except Exception as e:  # missing/corrupt files, no network: the weights' fault, not ours
                hint = (
                    f" (weights=None uses {DEFAULT_WEIGHTS} from the local Hugging Face cache only; "
                    "pass weights= a folder, or the hub name to download it)"
                    if self.weights is None
                    else ""
                )
                raise ToolError(
                    f"cannot load OWLv2 weights {source!r}: {type(e).__name__}: {e}{hint}"
                ) from None
            self._loaded = (processor, model.eval().to(device))
        return self._loaded

    def _run(self, images: list[Image.Image], targets: list[tuple[str, ...]]) -> list[Regions]:
        import torch

        processor, model = self._load()
        results: list[Regions] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            chunk_targets = targets[start : start + self.batch_size]
            queries = [list(t) if t else [OBJECT_LABEL] for t in chunk_targets]
            try:
                inputs = processor(text=queries, images=chunk, return_tensors="pt", truncation=True)
                with torch.inference_mode():
                    out = model(**inputs.to(model.device))
            except (RuntimeError, ValueError) as e:
                raise ToolError(f"OWLv2 inference failed: {type(e).__name__}: {e}") from None
            for j, (image, t) in enumerate(zip(chunk, chunk_targets)):
                results.append(self._regions(processor, out, j, image, t))
        return results

    def _regions(self, processor, out, j: int, image: Image.Image, targets: tuple[str, ...]) -> Regions:
        import torch
        from torchvision.ops import batched_nms

        width, height = image.size
        patches = out.pred_boxes.shape[1]
        if targets:
            logits = out.logits[j : j + 1, :, : len(targets)]  # padded queries of shorter lists dropped
            labels = targets
        else:
            logits = out.objectness_logits[j : j + 1].reshape(1, patches, 1)
            labels = (OBJECT_LABEL,)
        raw = SimpleNamespace(logits=logits.float(), pred_boxes=out.pred_boxes[j : j + 1].float())
        det = processor.image_processor.post_process_object_detection(
            raw, threshold=self.threshold, target_sizes=[(height, width)]
        )[0]
        boxes = det["boxes"].cpu().to(torch.float64)
        scores, idx = det["scores"].cpu().to(torch.float64), det["labels"].cpu()
        # boxes wholly in the square padding below/right of the image show nothing: dropped
        visible = (boxes[:, 0] < width) & (boxes[:, 1] < height) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        boxes, scores, idx = boxes[visible], scores[visible], idx[visible]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clamp(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clamp(0, height)
        boxes[:, 2] = torch.maximum(boxes[:, 2], boxes[:, 0])
        boxes[:, 3] = torch.maximum(boxes[:, 3], boxes[:, 1])
        keep = batched_nms(boxes, scores, idx, self.nms_iou)[: self.max_det]  # sorted by score
        meta = {"weights": self.weights, "targets": list(targets), "threshold": self.threshold}
        return Regions(
            boxes[keep].numpy(),
            scores[keep].numpy(),
            tuple(labels[int(i)] for i in idx[keep]),
            (width, height),
            self.name,
            None,
            meta,
        )
