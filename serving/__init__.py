"""The serving layer: one batched ``generate`` protocol over vLLM (HTTP) and transformers.

Heavy modules (the transformers backend) are imported by name when used.
"""

from .launcher import VllmServer
from .openai_http import OpenAIBackend
from .types import Backend, Completion, Message, Request, TokenLogprob
from .variants import Variant, get_variant, load_variants, register_variant

__all__ = [
    "Backend",
    "Completion",
    "Message",
    "OpenAIBackend",
    "Request",
    "TokenLogprob",
    "Variant",
    "VllmServer",
    "get_variant",
    "load_variants",
    "register_variant",
]
