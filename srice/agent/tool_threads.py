"""How the agent runs its tools: each in a daemon thread, timed, a segmenter on its detector's
boxes (``Agent._run_tools``). A hung tool is abandoned in its thread: it holds up neither the batch
beyond its limit nor the process's exit."""

from __future__ import annotations

import concurrent.futures
import threading
import time

from srice.tools.base import batch_or_each


class Timeout(str):
    """A tool's output when it overran its limit (a ``str`` like any tool failure, told apart)."""


def timed_batch(tool, images, targets) -> tuple[list, float]:
    began = time.perf_counter()
    outputs = batch_or_each(tool, images, targets)
    return outputs, time.perf_counter() - began


def timed_segment(tool, images, source, detected: concurrent.futures.Future) -> tuple[list, float]:
    """``tool.segment`` on what ``source`` found (its time only: the detection is the source's);
    an image the detector failed on fails here too, with the detector's reason."""
    found, _ = detected.result()
    began = time.perf_counter()
    ok = [i for i, d in enumerate(found) if not isinstance(d, str)]
    outputs: list = [f"detector {source.name} failed: {d}" if isinstance(d, str) else None for d in found]
    segmented = batch_or_each(_Segmenter(tool), [images[i] for i in ok], [found[i] for i in ok])
    for i, output in zip(ok, segmented):
        outputs[i] = output
    return outputs, time.perf_counter() - began


class _Segmenter:
    """``tool.segment`` in a tool's call shapes, the detections in the targets' place, so that
    ``batch_or_each`` keeps one image's failure to that image."""

    def __init__(self, tool):
        self.tool = tool

    def batch(self, images, detections):
        return self.tool.segment(images, detections)

    def __call__(self, image, detection):
        return self.tool.segment([image], [detection])[0]


def in_daemon_thread(fn, *args) -> concurrent.futures.Future:
    """``fn(*args)`` in a daemon thread; its result or exception arrives through the future."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            future.set_exception(e)

    threading.Thread(target=run, name=f"srice-tool-{getattr(args[0], 'name', '')}", daemon=True).start()
    return future
