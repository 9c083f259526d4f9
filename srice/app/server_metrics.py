"""The agent server's Prometheus metrics (``GET /metrics``): requests by status, latency, model calls,
the pathways that won, failed tool pathways by tool and kind, batch sizes and the queue depth."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from srice.agent.trace import Answer, tool_of


class Metrics:
    """Prometheus metrics of one server (its own registry, so several apps can live in one process)."""

    def __init__(self, queue_depth: Callable[[], int]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "srice_requests", "Chat completion requests by HTTP status", ["status"], registry=r
        )
        self.latency = Histogram(
            "srice_request_seconds", "Time from request to answer", registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300),
        )  # fmt: skip
        self.model_calls = Counter("srice_model_calls", "Model calls made for answers", registry=r)
        self.wins = Counter(
            "srice_pathway_wins", "Answers by the pathway that gave them", ["pathway"], registry=r
        )
        self.tool_failures = Counter(
            "srice_tool_failures", "Failed tool pathways by tool and kind", ["tool", "kind"], registry=r
        )
        self.batch_size = Histogram(
            "srice_batch_size", "Questions per agent batch", registry=r, buckets=(1, 2, 4, 8, 16, 32, 64)
        )
        self.queue = Gauge("srice_queue_depth", "Questions waiting or being answered", registry=r)
        self.queue.set_function(queue_depth)

    def answered(self, answer: Answer, seconds: float) -> None:
        self.latency.observe(seconds)
        self.model_calls.inc(answer.mllm_calls)
        if answer.pathway:
            self.wins.labels(tool_of(answer.pathway)).inc()
        for p in answer.trace:
            if p.error and p.name != "direct":
                self.tool_failures.labels(p.tool, p.error_kind or "other").inc()
