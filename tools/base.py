"""The tool interface and what every tool shares: input checks, thread guards, lazy imports.

A tool is a callable object: ``tool(image, targets) -> Regions`` with a ``name`` and a
``batch(images, targets_per_image) -> list[Regions]``. ``BaseTool`` implements the call on top of
``batch`` so each tool writes its batched inference once (``_run``); inputs are checked here, once,
and an image given twice with the same targets (the same object: several questions on one image)
is run once, its ``Regions`` returned for each.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

from PIL import Image

from srice.errors import InputError
from srice.tools.regions import Regions


@runtime_checkable
class Tool(Protocol):
    """What the agent needs from a vision tool. ``separate_views``: the agent shows each region on
    its own rather than their union (a zoom grid's union is the whole image). ``reads_text``: the
    labels are text the tool read (OCR), which the agent puts in the pathway's prompt."""

    name: str
    separate_views: bool
    reads_text: bool  # its region labels are text read in the image (OCR): the model is given them

    def __call__(self, image: Image.Image, targets: Sequence[str]) -> Regions: ...

    def batch(
        self, images: Sequence[Image.Image], targets_per_image: Sequence[Sequence[str]]
    ) -> list[Regions]: ...


class BaseTool:
    """``__call__`` and input checking on top of one batched ``_run``; subclasses set ``name``."""

    name: str = ""
    separate_views: bool = False
    reads_text: bool = False

    def __call__(self, image: Image.Image, targets: Sequence[str] = ()) -> Regions:
        return self.batch([image], [targets])[0]

    def batch(
        self, images: Sequence[Image.Image], targets_per_image: Sequence[Sequence[str]] | None = None
    ) -> list[Regions]:
        images = [check_image(image) for image in images]
        if targets_per_image is None:
            targets_per_image = [()] * len(images)
        if isinstance(targets_per_image, str) or len(targets_per_image) != len(images):
            raise InputError(
                f"{self.name} tool needs one target list per image: got {len(images)} images and "
                f"{'a string' if isinstance(targets_per_image, str) else len(targets_per_image)} target lists"
            )
        if not images:
            return []
        targets = [normalise_targets(t) for t in targets_per_image]
        # the same image object with the same targets (questions on one image) runs once
        first: dict[tuple[int, tuple[str, ...]], int] = {}
        for i, (image, want) in enumerate(zip(images, targets)):
            first.setdefault((id(image), want), i)
        unique = list(first.values())
        results = self._run([images[i] for i in unique], [targets[i] for i in unique])
        assert len(results) == len(unique), f"{type(self).__name__}._run returned the wrong number of Regions"
        if len(unique) == len(images):
            return results
        at = {i: k for k, i in enumerate(unique)}
        return [results[at[first[(id(image), want)]]] for image, want in zip(images, targets)]

    def _run(self, images: list[Image.Image], targets: list[tuple[str, ...]]) -> list[Regions]:
        raise NotImplementedError

    def load(self) -> None:
        """Load the tool's weights now; tools that load lazily override this."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def batch_or_each(
    tool, images: Sequence[Image.Image], targets: Sequence[Sequence[str]]
) -> list[Regions | str]:
    """The tool's batch, or per-image calls when the batch fails, so one bad image fails alone.

    Tools wrap large third-party stacks (torch, onnxruntime, ultralytics), so at this boundary any
    exception is a tool failure, returned in place of that image's Regions as "Type: message".
    """
    try:
        return list(tool.batch(images, targets))
    except Exception:  # noqa: BLE001
        outputs: list[Regions | str] = []
        for image, want in zip(images, targets):
            try:
                outputs.append(tool(image, want))
            except Exception as e:  # noqa: BLE001
                outputs.append(f"{type(e).__name__}: {e}")
        return outputs


def check_image(image) -> Image.Image:
    """An RGB PIL image (other modes converted as ``srice.images`` does); anything else is an InputError."""
    if not isinstance(image, Image.Image):
        raise InputError(f"tools take PIL images, got {type(image).__name__}")
    width, height = image.size
    if width < 1 or height < 1:
        raise InputError(f"image has no pixels ({width}x{height})")
    if image.mode != "RGB":
        from srice.images import to_rgb

        image = to_rgb(image)
    return image


def normalise_targets(targets: Sequence[str] | str | None) -> tuple[str, ...]:
    """Stripped, non-empty, de-duplicated target phrases in order; a bare string is one target."""
    if targets is None:
        return ()
    if isinstance(targets, str):
        targets = [targets]
    out: list[str] = []
    for target in targets:
        if not isinstance(target, str):
            raise InputError(f"targets must be strings, got {type(target).__name__}: {target!r}")
        phrase = " ".join(target.split())
        if phrase and phrase not in out:
            out.append(phrase)
    return tuple(out)


@contextmanager
def kept_torch_threads() -> Iterator[None]:
    """Restore torch's intra-op thread count after libraries that change it (ultralytics does)."""
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
