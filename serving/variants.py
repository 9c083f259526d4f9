"""The variant registry: a model variant (base, pruned, quantized) is a name for a model path or hub
id plus how to serve it, never another class.

The registry is the packaged ``variants.json`` overlaid by the user's file (``$SRICE_VARIANTS``, else
``~/.config/srice/variants.json``), which ``register_variant`` (e.g. ``srice compress --register``)
writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from srice.errors import InputError
from srice.files import read_file, write_atomic

PACKAGED = Path(__file__).with_name("variants.json")
BUILTIN_PREFIX = "builtin:"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # a variant or served name: safe in a path
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MAX_REGISTRY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Variant:
    name: str
    model: str  # a folder, a hub id, builtin:tiny or builtin:toy
    served_name: str
    vllm_args: tuple[str, ...] = ()
    description: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def is_hub(self) -> bool:
        """A hub id (``org/name``) that is not a local path: only such a model may reach the network."""
        if self.model.startswith(BUILTIN_PREFIX) or Path(self.model).expanduser().exists():
            return False
        return HUB_ID.match(self.model) is not None

    def model_path(self) -> str:
        """A local folder for builtin and path variants (building the builtin on first use)."""
        if self.model.startswith(BUILTIN_PREFIX):
            kind = self.model.removeprefix(BUILTIN_PREFIX)
            if kind == "toy":
                from srice.builtin.toy_bundle import toy_path

                return str(toy_path("mllm"))
            if kind != "tiny":
                raise InputError(f"unknown builtin model {self.model!r}; known: builtin:tiny, builtin:toy")
            from srice.builtin.tiny_mllm import TinySpec, tiny_model_path

            return str(tiny_model_path(TinySpec()))
        path = Path(self.model).expanduser()
        if path.exists():
            return str(path)
        if not self.is_hub:
            raise InputError(f"variant {self.name!r}: model folder not found: {self.model}")
        return self.model

    def fingerprint(self) -> str:
        """What identifies the model's weights: a hash of the files of a local model (their content
        up to 256 MB in all, else their names, sizes and times), or the hub id."""
        if self.is_hub:
            return f"hub:{self.model}"
        folder = Path(self.model_path())
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        digest = hashlib.sha256()
        whole = sum(p.stat().st_size for p in files) <= 256 * 2**20
        for p in files:
            info = p.stat()
            digest.update(f"{p.relative_to(folder)}:{info.st_size}:".encode())
            if whole:
                digest.update(p.read_bytes())
            else:
                digest.update(str(info.st_mtime_ns).encode())
        return ("sha256:" if whole else "files:") + digest.hexdigest()

    def calibration_dir(self) -> str | None:
        """The calibration folder that belongs to this model (``"calib"`` in its registry entry):
        conformal calibrators are fitted to one model and its tools, so they travel with the variant.
        ``builtin:toy`` is the trained toy bundle's."""
        calib = self.extra.get("calib")
        if not calib:
            return None
        if calib == f"{BUILTIN_PREFIX}toy":
            from srice.builtin.toy_bundle import toy_path

            return str(toy_path("calib"))
        return str(Path(calib).expanduser())


def user_registry_path() -> Path:
    if env := os.environ.get("SRICE_VARIANTS"):
        return Path(env)
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "srice" / "variants.json"


def _read(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(read_file(path, "variant registry", MAX_REGISTRY_BYTES))
    except ValueError as e:
        raise InputError(f"variant registry {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise InputError(f"variant registry {path} must hold a JSON object of name -> variant")
    return data


def variant_from_entry(name: str, entry) -> Variant:
    """A registry entry checked field by field; an ``InputError`` names what is wrong with it."""
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise InputError("the name must be letters, digits, '.', '_' or '-' (at most 64)")
    if not isinstance(entry, dict):
        raise InputError(f"an entry must be a JSON object, got {type(entry).__name__}")
    model = entry.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InputError("'model' must name a folder, a hub id (org/name) or builtin:tiny|toy")
    served = entry.get("served_name") or name
    if not isinstance(served, str) or not SAFE_NAME.match(served):
        raise InputError(f"'served_name' {served!r} must be letters, digits, '.', '_' or '-' (at most 64)")
    args = entry.get("vllm_args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise InputError('\'vllm_args\' must be a list of strings, e.g. ["--max-model-len", "4096"]')
    calib = entry.get("calib")
    if calib is not None and (not isinstance(calib, str) or not calib.strip()):
        raise InputError("'calib' must be a folder path")
    return Variant(
        name=name,
        model=model.strip(),
        served_name=served,
        vllm_args=tuple(args),
        description=str(entry.get("description", "")),
        extra={k: v for k, v in entry.items() if k not in Variant.__dataclass_fields__},
    )


@dataclass(frozen=True)
class Registry:
    variants: dict[str, Variant]
    problems: dict[str, str]  # a malformed entry (or file) -> what is wrong with it

    def problem_line(self) -> str:
        return "; ".join(f"{name}: {why}" for name, why in self.problems.items())


def load_registry() -> Registry:
    """The packaged variants overlaid by the user's; a malformed user entry is left out and named in
    ``problems`` while every other entry keeps working (a broken user file, likewise, as a whole)."""
    variants: dict[str, Variant] = {}
    problems: dict[str, str] = {}
    for path in (PACKAGED, user_registry_path()):
        try:
            entries = _read(path)
        except InputError as e:
            if path == PACKAGED:
                raise
            problems[str(path)] = str(e)
            continue
        for name, entry in entries.items():
            try:
                variants[name] = variant_from_entry(name, entry)
                problems.pop(name, None)
            except InputError as e:
                if path == PACKAGED:
                    raise InputError(f"packaged variant {name!r} is malformed: {e}") from None
                variants.pop(name, None)
                problems[name] = f"{e} (in {path})"
    return Registry(variants, problems)


def load_variants() -> dict[str, Variant]:
    return load_registry().variants


def get_variant(name: str) -> Variant:
    """The variant ``name``; a malformed entry is an error naming what is wrong, and others that are
    malformed are named on stderr while this one works."""
    registry = load_registry()
    if name in registry.problems:
        raise InputError(f"variant {name!r} is malformed: {registry.problems[name]}")
    if name not in registry.variants:
        broken = f" (malformed, left out: {', '.join(registry.problems)})" if registry.problems else ""
        raise InputError(f"unknown variant {name!r}; known: {', '.join(sorted(registry.variants))}{broken}")
    if registry.problems:
        print(
            f"warning: malformed variant registry entries left out: {registry.problem_line()}",
            file=sys.stderr,
        )
    return registry.variants[name]


def register_variant(variant: Variant, path: Path | None = None) -> Path:
    """Add or replace ``variant`` in the user registry (atomic write)."""
    path = Path(path) if path else user_registry_path()
    data = _read(path)
    entry = asdict(variant)
    entry.pop("name")
    entry |= entry.pop("extra")
    entry["vllm_args"] = list(variant.vllm_args)
    data[variant.name] = entry
    return write_atomic(path, json.dumps(data, indent=2))
