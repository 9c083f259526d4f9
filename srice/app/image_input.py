"""How a client hands the server an image, one rule set for the OpenAI API (``srice serve --agent``)
and the MCP tools (``srice mcp``): a ``data:`` URL, or (MCP) bare base64 image bytes, or a local
path inside the folder the operator allowed. Remote URLs are refused: the server makes no network
requests. A refusal carries the HTTP status it means; each front end words it its own way."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from srice.app.server_config import Limits

# base64 of the first bytes of PNG, JPEG, GIF and WebP files: a bare base64 image, not a path
_BASE64_IMAGE = ("iVBORw0KGgo", "/9j/", "R0lGOD", "UklGR")


class ImageRefused(Exception):
    """An image reference the server will not read; ``status`` is the HTTP status it amounts to."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _decode(payload: str) -> bytes:
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRefused(400, "the image's base64 data is not valid") from None


def image_source(reference: str, limits: Limits, *, bare_base64: bool = False) -> bytes | Path:
    """The image's bytes, or its path inside ``limits.image_folder``. ``bare_base64``: also take
    base64 image bytes without a ``data:`` header (what MCP clients send)."""
    if bare_base64 and reference.startswith(_BASE64_IMAGE):
        return _decode(reference)
    if reference.startswith("data:"):
        header, _, payload = reference.partition(",")
        if ";base64" not in header:
            raise ImageRefused(400, "data: image URLs must be base64-encoded")
        if len(payload) * 3 // 4 > limits.max_image_bytes:
            raise ImageRefused(413, f"image larger than {limits.max_image_bytes} bytes")
        return _decode(payload)
    if reference.startswith(("http://", "https://")):
        raise ImageRefused(400, "remote image URLs are not fetched (the server is offline); send a data: URL")
    if limits.image_folder is None:
        raise ImageRefused(
            400, "local image paths are not allowed on this server (see --image-folder); send a data: URL"
        )
    folder = limits.image_folder.resolve()
    path = Path(reference.removeprefix("file://")).expanduser()
    path = (path if path.is_absolute() else folder / path).resolve()
    if not path.is_relative_to(folder):
        raise ImageRefused(403, "the image path is outside the allowed folder")
    return path
