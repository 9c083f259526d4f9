"""The serving layer: one batched ``generate`` protocol over vLLM (HTTP) and transformers.

Names are imported on first use (``from srice.serving import OpenAIBackend``), so a light module of
this package (``srice.serving.config``, say) can be imported without the HTTP client or the model
libraries.
"""

from srice.lazy import lazy_names

_LAZY = {
    "VllmServer": "launcher",
    "OpenAIBackend": "openai_http",
    **dict.fromkeys(("Backend", "Completion", "Message", "Request", "TokenLogprob"), "types"),
    **dict.fromkeys(("Variant", "get_variant", "load_variants", "register_variant"), "variants"),
    "ServingConfig": "config",
    **dict.fromkeys(("open_backend", "start_server"), "backends"),
}
__all__ = sorted(_LAZY)


__getattr__ = lazy_names(__name__, _LAZY)
