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

    @property
    def flag(self) -> str:
        """How a command names this variant: ``--variant NAME``, or ``--model PATH`` (made on the fly)."""
        model = self.extra.get("model_flag")
        return f"--model {model}" if model else f"--variant {self.name}"

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


# vllm serve arguments for a model named with --model: on the CPU build as for the toy (float32, no
# compile, one process: what worked on 2 cores), on a GPU with room left for the tools; the context is
# the model's own, at most MAX_MODEL_LEN tokens (a folder's config says; a hub id is not read ahead).
# The CPU build caches prefixes in blocks of 128 tokens unless told: a question's pathways share the
# image and question (~60 tokens on the toy), less than one such block, so nothing was reused (3.4% of
# prompt tokens cached on 24 toy questions); 32 is the smallest its attention kernel takes (45.6%).
MAX_MODEL_LEN = {"cpu": 4096, "gpu": 8192}
_IMAGES = '{"image": 2, "video": 0}'
CPU_ARGS = ("--dtype", "float32", "--enforce-eager", "--kv-cache-memory-bytes", str(2**30),
            "--limit-mm-per-prompt", _IMAGES, "--distributed-executor-backend", "uni",
            "--enable-prefix-caching", "--block-size", "32")  # fmt: skip
GPU_ARGS = ("--limit-mm-per-prompt", _IMAGES, "--enable-prefix-caching", "--gpu-memory-utilization", "0.8")


def variant_for_model(model: str, *, gpu: bool) -> Variant:
    """A variant made on the fly for ``--model PATH|HUB_ID``: a model folder, or a hub id (which only
    ``--allow-hub`` lets reach the network), served with arguments suited to this machine (``gpu``:
    vLLM's GPU build, else its CPU build). No calibration folder: srice says how to fit one."""
    path = Path(model).expanduser()
    local = path.exists()
    if local and not (path / "config.json").is_file():
        raise InputError(f"--model {model}: not a model folder (no config.json)")
    if not local and not HUB_ID.match(model):
        raise InputError(f"--model {model}: no such folder, and not a hub id (org/name)")
    source = str(path.resolve()) if local else model
    name = re.sub(r"[^A-Za-z0-9._-]", "-", (path.resolve().name if local else model.replace("/", "--")))
    name = name[:64].lstrip(".-_") or "model"
    limit = MAX_MODEL_LEN["gpu" if gpu else "cpu"]
    length = min(limit, _context(path)) if local else limit
    args = (*(GPU_ARGS if gpu else CPU_ARGS), "--max-model-len", str(length))
    return Variant(
        name, source, name, args, description=f"named with --model {model}", extra={"model_flag": model}
    )


def _context(folder: Path) -> int:
    """The longest context a model folder's config allows (its text model's, for an MLLM)."""
    try:
        config = json.loads(read_file(folder / "config.json", "model config", MAX_REGISTRY_BYTES))
    except ValueError as e:
        raise InputError(f"{folder}/config.json is not valid JSON: {e}") from None
    for part in (config.get("text_config") or {}, config):
        if isinstance(part.get("max_position_embeddings"), int):
            return part["max_position_embeddings"]
    return 1 << 30


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
    """A registry entry checked field by field; an ``InputError`` names the field and what is wrong
    with it (``load_registry`` adds the file)."""
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise InputError(f"the variant name {name!r} must be letters, digits, '.', '_' or '-' (at most 64)")
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
        raise InputError(f"'calib' must be a folder path, got {calib!r}")
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise InputError(f"'description' must be text, got {type(description).__name__}")
    return Variant(
        name=name,
        model=model.strip(),
        served_name=served,
        vllm_args=tuple(args),
        description=description,
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
                    raise InputError(f"packaged variant {name!r} in {path} is malformed: {e}") from None
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


def user_variant_names() -> set[str]:
    """The names in the user's registry file (what ``remove_variant`` can take out)."""
    return set(_read(user_registry_path()))


def remove_variant(name: str, path: Path | None = None) -> Path:
    """Take ``name`` out of the user registry (atomic write); packaged variants cannot be removed."""
    path = Path(path) if path else user_registry_path()
    data = _read(path)
    if name not in data:
        packaged = name in _read(PACKAGED)
        where = "is packaged with srice and cannot be removed" if packaged else f"is not in {path}"
        raise InputError(f"variant {name!r} {where}")
    del data[name]
    return write_atomic(path, json.dumps(data, indent=2))


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
