"""``SamTool``: the "detector + SAM" pathway — a detector tool's boxes prompt segment-anything.

The detector (any tool: ``"owl"``, ``"yolo"``, or an instance) runs first with the targets; every box
it returns becomes a SAM box prompt, and SAM's mask replaces the box's outline. Our choices:

- One mask per box (``multimask=False``, SAM's recommendation for unambiguous box prompts); with
  ``multimask=True`` the three candidates are scored by SAM's IoU head and the best is kept.
- Masks are clipped to their prompt box (``clip_to_box``): a box prompt asks for the object in the
  box, and mask pixels outside it are leaks, not object.
- Boxes are tightened to their mask's extent (``tighten_boxes``), so crops and calibration see the
  segmented object; an empty mask keeps the detector's box (and stays empty). The detector's boxes
  are kept in ``meta["prompt_boxes"]``; SAM's predicted mask IoUs in ``meta["mask_scores"]``.
- Scores and labels stay the detector's: SAM says where the object is, not whether it is there.

Sharing a detector: ``segment`` takes boxes a detector already found, so an agent that also runs
that detector as a tool of its own hands SAM the tool's boxes instead of detecting twice
(``Agent``; ``build_tools`` gives the embedded ``sam`` the ``yolo`` tool itself). ``max_prompts``
keeps a detector's best boxes only: SAM returns one full-size mask per box.

Batching: images are encoded by SAM's ViT in batches of ``batch_size`` (the expensive part), and the
prompts of each image are decoded in chunks of ``prompt_chunk`` boxes.

Checkpoints: an official ``sam_vit_{b,l,h}_*.pth`` state dict (the variant is read from the weight
shapes, or ``model_type=``), or a file written by ``srice.builtin.tiny_tools.tiny_sam`` (a dict with the
architecture config next to the state dict); ``weights=`` is accepted as another name for
``checkpoint=``, as every other tool calls its model file that. segment-anything has no hub:
no checkpoint is an error at first use.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from srice.devices import check_device, resolve_device
from srice.errors import InputError, ToolError, require
from srice.tools.base import BaseTool, Tool, check_image
from srice.tools.regions import Regions

SRICE_SAM_FORMAT = "srice-sam-v1"
_EMBED_DIMS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}


def sam_from_config(config: dict):
    """A segment-anything ``Sam`` of the given (small) architecture, random weights."""
    import torch

    modeling = require("segment_anything.modeling", "segment-anything", "the sam tool", ToolError)
    img, patch, dim = int(config["img_size"]), int(config["patch_size"]), int(config["prompt_dim"])
    return modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(
            depth=int(config["depth"]),
            embed_dim=int(config["embed_dim"]),
            img_size=img,
            mlp_ratio=float(config.get("mlp_ratio", 4.0)),
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=int(config["num_heads"]),
            patch_size=patch,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(config["global_attn_indexes"]),
            window_size=int(config["window_size"]),
            out_chans=dim,
        ),
        prompt_encoder=modeling.PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(img // patch, img // patch),
            input_image_size=(img, img),
            mask_in_chans=int(config.get("mask_in_chans", 16)),
        ),
        mask_decoder=modeling.MaskDecoder(
            num_multimask_outputs=3,
            transformer=modeling.TwoWayTransformer(
                depth=int(config.get("decoder_depth", 2)),
                embedding_dim=dim,
                mlp_dim=int(config.get("decoder_mlp_dim", 2048)),
                num_heads=int(config.get("decoder_heads", 8)),
            ),
            transformer_dim=dim,
            iou_head_depth=3,
            iou_head_hidden_dim=int(config.get("iou_head_hidden_dim", 256)),
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def load_sam(checkpoint: str | os.PathLike, model_type: str | None = None, device: str = "cpu"):
    """A ``Sam`` in eval mode from an official or srice checkpoint (see the module docstring)."""
    import torch

    sa = require("segment_anything", "segment-anything", "the sam tool", ToolError)
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise ToolError(f"SAM checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, pickled code: all the file's fault
        raise ToolError(f"cannot read SAM checkpoint {path}: {type(e).__name__}: {e}") from None
    if isinstance(blob, dict) and blob.get("format") == SRICE_SAM_FORMAT:
        model, state = sam_from_config(blob["config"]), blob["model"]
    elif isinstance(blob, dict) and "image_encoder.patch_embed.proj.weight" in blob:
        dim = int(blob["image_encoder.patch_embed.proj.weight"].shape[0])
        model_type = model_type or _EMBED_DIMS.get(dim)
        if model_type not in sa.sam_model_registry:
            raise ToolError(
                f"SAM checkpoint {path} has embed dim {dim}; pass model_type= one of vit_b, vit_l, vit_h"
            )
        model, state = sa.sam_model_registry[model_type](checkpoint=None), blob
    else:
        raise ToolError(f"not a SAM checkpoint (no image encoder weights): {path}")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ToolError(
            f"SAM checkpoint {path} does not fit the {model_type or 'srice'} architecture: {first}"
        ) from None
    return model.eval().to(device)


class SamTool(BaseTool):
    """Detector boxes -> SAM masks; see the module docstring for the choices made."""

    name = "sam"

    def __init__(
        self,
        *,
        detector: Tool | str = "owl",
        checkpoint: str | os.PathLike | None = None,
        weights: str | os.PathLike | None = None,
        model_type: str | None = None,
        detector_options: dict | None = None,
        device: str = "auto",
        multimask: bool = False,
        clip_to_box: bool = True,
        tighten_boxes: bool = True,
        batch_size: int = 4,
        prompt_chunk: int = 64,
        max_prompts: int | None = None,
    ) -> None:
        if weights is not None:  # the name every other tool uses for its model file
            if checkpoint is not None and str(checkpoint) != str(weights):
                raise InputError("give the SAM checkpoint as checkpoint= or weights=, not both")
            checkpoint = weights
        if isinstance(detector, str):
            if detector == "sam":
                raise InputError("the sam tool needs a detector other than sam (e.g. 'owl' or 'yolo')")
            from srice.tools import get_tool

            detector = get_tool(detector, **(detector_options or {}))
        elif detector_options:
            raise InputError("detector_options only apply when the detector is given by name")
        if not callable(getattr(detector, "batch", None)):
            raise InputError(f"detector must be a tool (with .batch), got {type(detector).__name__}")
        if batch_size < 1 or prompt_chunk < 1 or (max_prompts is not None and max_prompts < 1):
            raise ValueError("batch_size, prompt_chunk and max_prompts must be positive")
        self.detector = detector
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.model_type = model_type
        self.device = check_device(device)
        self.multimask, self.clip_to_box, self.tighten_boxes = multimask, clip_to_box, tighten_boxes
        self.batch_size, self.prompt_chunk = int(batch_size), int(prompt_chunk)
        self.max_prompts = None if max_prompts is None else int(max_prompts)
        self._sam = None

    @property
    def sam(self):
        if self._sam is None:
            if self.checkpoint is None:
                raise ToolError(
                    "the sam tool needs checkpoint= a SAM .pth file (e.g. sam_vit_b_01ec64.pth from the "
                    "segment-anything release, or srice.builtin.tiny_tools.tiny_sam() for tests)"
                )
            self._sam = load_sam(self.checkpoint, self.model_type, resolve_device(self.device))
        return self._sam

    def _run(self, images: list[Image.Image], targets: list[tuple[str, ...]]) -> list[Regions]:
        _ = self.sam  # a bad checkpoint fails before the detector spends anything
        return self.segment(images, self.detector.batch(images, targets))

    def segment(self, images: Sequence[Image.Image], detections: Sequence[Regions]) -> list[Regions]:
        """SAM's masks for boxes a detector found in these images (the best ``max_prompts`` each);
        a pair given twice (the same image and detection objects: questions on one image) runs once."""
        if len(detections) != len(images):
            raise InputError(
                f"segment needs one detection per image: {len(images)} images, {len(detections)} given"
            )
        first: dict[tuple[int, int], int] = {}
        for i, (image, det) in enumerate(zip(images, detections)):
            first.setdefault((id(image), id(det)), i)
        if len(first) < len(images):
            unique = list(first.values())
            done = type(self).segment(self, [images[i] for i in unique], [detections[i] for i in unique])
            at = {i: k for k, i in enumerate(unique)}
            return [done[at[first[(id(im), id(d))]]] for im, d in zip(images, detections)]
        sam = self.sam
        images = [check_image(image) for image in images]
        detections = [self._best(d) for d in detections]
        todo = [i for i, d in enumerate(detections) if len(d)]
        results = [
            d
            if len(d)
            else d.replace(
                tool=self.name,
                masks=np.zeros((0, d.image_size[1], d.image_size[0]), bool),
                meta=self._meta(d),
            )
            for d in detections
        ]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            masks_scores = self._segment(sam, [images[i] for i in chunk], [detections[i] for i in chunk])
            for i, (masks, mask_scores) in zip(chunk, masks_scores):
                results[i] = self._finish(detections[i], masks, mask_scores)
        return results

    def _best(self, det: Regions) -> Regions:
        if self.max_prompts is None or len(det) <= self.max_prompts:
            return det
        return det.select(np.argsort(-det.scores, kind="stable")[: self.max_prompts])

    def _segment(
        self, sam, images: list[Image.Image], dets: list[Regions]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch
        from segment_anything.utils.transforms import ResizeLongestSide

        transform = ResizeLongestSide(sam.image_encoder.img_size)
        device = sam.device
        inputs, sizes = [], []
        for image in images:
            array = np.asarray(image)
            resized = (
                torch.as_tensor(transform.apply_image(array), device=device).permute(2, 0, 1).contiguous()
            )
            inputs.append(resized)
            sizes.append(array.shape[:2])
        out = []
        try:
            with torch.inference_mode():
                embeddings = sam.image_encoder(torch.stack([sam.preprocess(x) for x in inputs]))
                for x, size, det, emb in zip(inputs, sizes, dets, embeddings):
                    boxes = transform.apply_boxes_torch(torch.as_tensor(det.boxes, dtype=torch.float32), size)
                    masks, scores = [], []
                    for b in boxes.to(device).split(self.prompt_chunk):
                        sparse, dense = sam.prompt_encoder(points=None, boxes=b, masks=None)
                        low_res, iou = sam.mask_decoder(
                            image_embeddings=emb.unsqueeze(0),
                            image_pe=sam.prompt_encoder.get_dense_pe(),
                            sparse_prompt_embeddings=sparse,
                            dense_prompt_embeddings=dense,
                            multimask_output=self.multimask,
                        )
                        best = iou.argmax(dim=1)  # one candidate unless multimask
                        rows = torch.arange(len(best), device=best.device)
                        low_res, iou = low_res[rows, best].unsqueeze(1), iou[rows, best]
                        full = sam.postprocess_masks(low_res, input_size=x.shape[-2:], original_size=size)
                        masks.append((full[:, 0] > sam.mask_threshold).cpu().numpy())
                        scores.append(iou.float().cpu().numpy())
                    out.append((np.concatenate(masks), np.concatenate(scores)))
        except RuntimeError as e:
            raise ToolError(f"SAM inference failed: {type(e).__name__}: {e}") from None
        return out

    def _meta(self, det: Regions) -> dict:
        return {
            "detector": getattr(self.detector, "name", type(self.detector).__name__),
            "detector_meta": dict(det.meta),
            "prompt_boxes": [[round(float(v), 2) for v in b] for b in det.boxes],
            "mask_scores": [],
            "checkpoint": self.checkpoint,
        }

    def _finish(self, det: Regions, masks: np.ndarray, mask_scores: np.ndarray) -> Regions:
        width, height = det.image_size
        boxes = det.boxes.copy()
        masks = masks.copy()
        if self.clip_to_box:
            for k, (x1, y1, x2, y2) in enumerate(boxes):
                inside = np.zeros((height, width), dtype=bool)
                inside[max(0, math.floor(y1)) : math.ceil(y2), max(0, math.floor(x1)) : math.ceil(x2)] = True
                masks[k] &= inside
        if self.tighten_boxes:
            filled = masks.any(axis=(1, 2))
            boxes[filled] = boxes_of_masks(masks[filled])
        meta = self._meta(det)
        meta["mask_scores"] = [round(float(s), 4) for s in mask_scores]
        return Regions(boxes, det.scores, det.labels, det.image_size, self.name, masks, meta)


def boxes_of_masks(masks: Sequence[np.ndarray]) -> np.ndarray:
    """xyxy pixel-edge boxes of boolean masks ((0, 0, 0, 0) for an empty one)."""
    out = np.zeros((len(masks), 4))
    for k, m in enumerate(masks):
        if m.any():
            ys, xs = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
            out[k] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return out
