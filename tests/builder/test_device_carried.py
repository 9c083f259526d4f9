"""Every tool and model backend srice builds runs where it was told: the device given to the
builder (or the pool's spec) reaches each tool that runs a model, SAM's detector, and the
in-process model with its dtype."""

from __future__ import annotations

import pytest
import torch

from srice.builder.pool import AgentPool
from srice.builder.spec import AgentSpec
from srice.builder.toolbox import build_tools
from srice.errors import InputError
from srice.serving.config import ServingConfig

MODEL_TOOLS = ("yolo", "owl", "sam")  # the tools that run a torch model


def test_every_built_tool_carries_the_device_it_was_given():
    for device in ("cpu", "auto"):
        tools = {t.name: t for t in build_tools(["yolo", "owl", "sam", "zoom"], device=device)}
        assert {n: tools[n].device for n in MODEL_TOOLS} == dict.fromkeys(
            MODEL_TOOLS, "cpu"
        )  # auto: no GPU here
        assert tools["sam"].detector is tools["yolo"]
    [sam] = build_tools(["sam"], device="cpu")
    assert sam.detector.device == "cpu"  # its own embedded detector, on the same device
    with pytest.raises(InputError, match="--device must be"):
        build_tools(["yolo"], device="gpu")


def test_the_pool_builds_tools_and_the_in_process_model_on_the_spec_device(tiny_model):
    spec = AgentSpec(
        variant="tiny", tools=("yolo", "zoom"), device="cpu",
        serving=ServingConfig(backend="transformers", device="cpu"),
    )  # fmt: skip
    with AgentPool(spec, log=lambda text: None) as pool:
        agent = pool.agent()
        assert pool.device == "cpu" and agent.tools[0].device == "cpu"
        backend = agent.backend
        assert (backend.device, backend.dtype, str(backend.model.device)) == ("cpu", "float32", "cpu")
        assert next(backend.model.parameters()).dtype == torch.float32
