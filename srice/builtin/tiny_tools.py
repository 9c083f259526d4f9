"""Tiny local models for every tool, built here because no model hub is reachable (tests, CPU runs).

Each builder returns a path usable as the tool's weights:

- ``tiny_yolo()``: ultralytics ``yolo11n.yaml`` (or ``yolo11n-seg.yaml``) with random weights made
  non-degenerate by a data-dependent init (``_calibrate_yolo``) and the 80 COCO class names, saved
  as a ``.pt`` (``YoloTool(weights=...)``);
- ``tiny_sam()``: a segment-anything ``Sam`` with a 2-block, 64-wide ViT at 256 px, saved as a
  ``.pth`` dict holding the architecture next to the state dict (``SamTool(checkpoint=...)``);
- ``tiny_owl()``: an OWLv2 with one-layer 32-wide text and vision towers at 128 px, a CLIP BPE
  tokenizer trained here on a small word list, and an image processor at 128 px, in Hugging Face
  format (``OwlTool(weights=...)``).

Weights are random: these models exercise the real code paths and output shapes, not accuracy.
Builds are cached under ``cache_dir()/"tools"`` by a content key (builder version, every size
field, seed, and for YOLO the ultralytics version, whose pickled modules the file holds); asking
twice returns the same path, and the same key builds the same bytes on a given machine (the YOLO
init runs forward passes, so other CPUs may differ in the last bits). Building never touches the
caller's random state or thread settings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from srice.builtin.tiny_mllm import build_cached
from srice.paths import cache_dir

BUILDER_VERSION = 1
FIXED_DATE = "2026-01-01T00:00:00+00:00"  # ultralytics stamps the save time; a fixed one keeps bytes stable

TINY_SAM_CONFIG = {
    "img_size": 256,
    "patch_size": 16,
    "embed_dim": 64,
    "depth": 2,
    "num_heads": 2,
    "mlp_ratio": 2.0,
    "window_size": 4,
    "global_attn_indexes": [1],
    "prompt_dim": 32,
    "mask_in_chans": 8,
    "decoder_depth": 2,
    "decoder_mlp_dim": 64,
    "decoder_heads": 2,
    "iou_head_hidden_dim": 32,
}

_OWL_WORDS = (
    "a an the of in on at with left right top bottom small large big red green blue yellow black white "
    "object thing sign text word number logo shape square circle triangle star face hand man woman people "
    "child car vehicle sky tree building window door road"
).split()


def _key(fields: dict) -> str:
    blob = json.dumps({"v": BUILDER_VERSION, **fields}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cached(kind: str, fields: dict, filename: str, build: Callable[[Path], None], root: Path | None) -> Path:
    """``root/tiny-<kind>-<key>/<filename>``, built by ``build(folder)`` on first use (atomically)."""
    root = Path(root) if root is not None else cache_dir() / "tools"
    folder = root / f"tiny-{kind}-{_key({'kind': kind, **fields})}"
    return build_cached(folder, build, marker=filename) / filename


# -- YOLO -----------------------------------------------------------------------------------------
def tiny_yolo(*, segment: bool = False, seed: int = 0, root: Path | None = None) -> Path:
    """A random-weight ``yolo11n`` (``-seg`` if ``segment``) with COCO names, as a ``.pt`` file."""
    from srice.tools.yolo import import_ultralytics

    ultralytics = import_ultralytics()
    cfg = "yolo11n-seg.yaml" if segment else "yolo11n.yaml"
    fields = {"cfg": cfg, "seed": seed, "ultralytics": ultralytics.__version__, "init": "calibrated-v2"}
    name = f"tiny-{Path(cfg).stem}.pt"
    return _cached("yolo", fields, name, lambda out: _build_yolo(out / name, cfg, seed), root)


def _build_yolo(path: Path, cfg: str, seed: int) -> None:
    import torch

    from srice.tools.vocab import COCO_NAMES
    from srice.tools.yolo import _kept_global_state, import_ultralytics

    ultralytics = import_ultralytics()
    with _kept_global_state(), torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ultralytics.YOLO(cfg)
        _calibrate_yolo(model.model, seed)
        model.model.names = dict(enumerate(COCO_NAMES))
        staging = path.with_suffix(".unstamped.pt")
        model.save(staging)
    ckpt = torch.load(staging, map_location="cpu", weights_only=False)
    ckpt["date"] = FIXED_DATE
    torch.save(ckpt, path)
    staging.unlink()


def _synthetic_images(n: int, size: int, seed: int):
    """``n`` RGB tensors in [0, 1]: grey backgrounds with random coloured boxes (a stand-in for photos)."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for k in range(n):
        out[k] = rng.uniform(0.2, 0.95)
        for _ in range(rng.integers(2, 6)):
            x, y = rng.integers(0, size - 16, 2)
            w, h = rng.integers(12, size // 2, 2)
            out[k, :, y : y + h, x : x + w] = rng.uniform(0, 1, (3, 1, 1))
    return torch.from_numpy(out)


def _calibrate_yolo(net, seed: int) -> None:
    """Make a random-weight YOLO give varied, content-dependent outputs instead of constants.

    Freshly initialised, yolo11n's activations shrink layer by layer until the head sees ~1e-7 and
    every box gets the same class and score. So, data-dependent init (as in LSUV): batch-norm
    statistics are estimated on synthetic images, then each head's last convolution is rescaled to
    unit-variance outputs, with class logits centred at -4 (scores around 0.02, up to ~0.7). Runs on
    one thread so the floating-point result does not depend on the machine's core count.
    """
    import torch

    images = _synthetic_images(12, 256, seed)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            net.train()
            net(images)
            net.eval()
            head = net.model[-1]
            classes = [branch[-1] for branch in head.cv3]
            finals = classes + [branch[-1] for branch in head.cv2] + [b[-1] for b in getattr(head, "cv4", [])]
            outputs: dict[int, torch.Tensor] = {}
            hooks = [
                conv.register_forward_hook(lambda mod, args, out, k=k: outputs.__setitem__(k, out))
                for k, conv in enumerate(finals)
            ]
            net(images)
            for hook in hooks:
                hook.remove()
            for k, conv in enumerate(finals):
                spread = (outputs[k] - conv.bias.view(1, -1, 1, 1)).std().clamp_min(1e-12)
                conv.weight.div_(spread * 2)
                if conv in classes:
                    conv.bias.fill_(-4.0)
    finally:
        torch.set_num_threads(threads)


# -- SAM ------------------------------------------------------------------------------------------
def tiny_sam(*, seed: int = 0, root: Path | None = None) -> Path:
    """A random-weight tiny SAM (``TINY_SAM_CONFIG``) as a ``.pth`` file for ``SamTool``."""
    fields = {"config": TINY_SAM_CONFIG, "seed": seed}
    return _cached("sam", fields, "tiny-sam.pth", lambda out: _build_sam(out / "tiny-sam.pth", seed), root)


def _build_sam(path: Path, seed: int) -> None:
    import torch

    from srice.tools.sam import SRICE_SAM_FORMAT, sam_from_config

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = sam_from_config(TINY_SAM_CONFIG)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save({"format": SRICE_SAM_FORMAT, "config": TINY_SAM_CONFIG, "model": state}, path)


# -- OWLv2 ----------------------------------------------------------------------------------------
def tiny_owl(*, seed: int = 0, image_size: int = 128, root: Path | None = None) -> Path:
    """A random-weight tiny OWLv2 with its tokenizer and processor, as a Hugging Face folder."""
    fields = {
        "seed": seed,
        "image_size": image_size,
        "hidden": 32,
        "layers": 1,
        "patch": 16,
        "merges": 300,
        "heads": "std0.02",
    }
    return _cached("owl", fields, "model", lambda out: _build_owl(out / "model", seed, image_size), root)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's printable stand-in for each byte, in CLIP's order (printable bytes first)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + len(mapping) - len(printable))
    return mapping


def _bpe_merges(words: list[str], n_merges: int) -> list[tuple[str, str]]:
    """A plain BPE over ``words``, ties broken by the pair's text, so every run gives the same merges.

    (The ``tokenizers`` trainer breaks count ties in hash order, which differs from run to run.)
    """
    byte_symbol = _bytes_to_unicode()
    seqs = []
    for word in words:
        chars = [byte_symbol[b] for b in word.encode()]
        seqs.append(chars[:-1] + [chars[-1] + "</w>"])
    merges: list[tuple[str, str]] = []
    for _ in range(n_merges):
        counts: dict[tuple[str, str], int] = {}
        for seq in seqs:
            for pair in zip(seq, seq[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        for k, seq in enumerate(seqs):
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[k] = out
    return merges


def _clip_tokenizer():
    """A CLIP tokenizer with CLIP's layout and a small vocabulary: COCO names and ``_OWL_WORDS``.

    Like CLIP's: the 256 byte symbols, the same with the end-of-word mark, the merges, then
    start/end-of-text. OWLv2 depends on two of these facts: "!" (id 0) pads, so a padded query
    starts with 0 and is masked; and end-of-text has the largest id, since the text tower pools at
    ``argmax(input_ids)``. The merges come from a deterministic BPE over the word list.
    """
    from transformers import CLIPTokenizer

    from srice.tools.vocab import COCO_NAMES

    symbols = list(_bytes_to_unicode().values())
    words = sorted(set(" ".join(COCO_NAMES).split()) | set(_OWL_WORDS))
    merges = _bpe_merges(words, n_merges=300)
    tokens = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges]
    vocab: dict[str, int] = {}
    for token in [*tokens, "<|startoftext|>", "<|endoftext|>"]:
        vocab.setdefault(token, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, pad_token="!", model_max_length=16)


def _build_owl(path: Path, seed: int, image_size: int) -> None:
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    tokenizer = _clip_tokenizer()
    config = Owlv2Config(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=16,
        ),
        projection_dim=32,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Owlv2ForObjectDetection(config).eval()
        # default init saturates the tiny heads (scores of exactly 1, zero-size boxes); small head
        # weights leave each patch's box near its prior, so boxes tile the image and scores vary
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.startswith(("class_head.", "box_head.", "objectness_head.")):
                    param.normal_(0.0, 0.02) if name.endswith("weight") else param.zero_()
    model.save_pretrained(path)
    processor = Owlv2Processor(
        image_processor=Owlv2ImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(path)
