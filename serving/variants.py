"""The variant registry: a model variant (base, pruned, quantized) is a name for a model path or hub
id plus how to serve it, never another class.

The registry is the packaged ``variants.json`` overlaid by the user's file (``$SRICE_VARIANTS``, else
``~/.config/srice/variants.json``), which ``register_variant`` (e.g. ``srice compress --register``)
writes.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from srice.errors import InputError

PACKAGED = Path(__file__).with_name("variants.json")
BUILTIN_PREFIX = "builtin:"


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
        return not self.model.startswith(BUILTIN_PREFIX) and not Path(self.model).expanduser().exists()

    def model_path(self) -> str:
        """A local folder for builtin and path variants (building the builtin on first use)."""
        if self.model.startswith(BUILTIN_PREFIX):
            kind = self.model.removeprefix(BUILTIN_PREFIX)
            if kind == "toy":
                from srice.toy import toy_path

                return str(toy_path("mllm"))
            if kind != "tiny":
                raise InputError(f"unknown builtin model {self.model!r}; known: builtin:tiny, builtin:toy")
            from srice.toy.tiny import TinySpec, tiny_model_path

            return str(tiny_model_path(TinySpec()))
        path = Path(self.model).expanduser()
        return str(path) if path.exists() else self.model

    def calibration_dir(self) -> str | None:
        """The calibration folder that belongs to this model (``"calib"`` in its registry entry):
        conformal calibrators are fitted to one model and its tools, so they travel with the variant.
        ``builtin:toy`` is the trained toy bundle's."""
        calib = self.extra.get("calib")
        if not calib:
            return None
        if calib == f"{BUILTIN_PREFIX}toy":
            from srice.toy import toy_path

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
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"variant registry {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise InputError(f"variant registry {path} must hold a JSON object of name -> variant")
    return data


def load_variants() -> dict[str, Variant]:
    out = {}
    for path in (PACKAGED, user_registry_path()):
        for name, entry in _read(path).items():
            try:
                out[name] = Variant(
                    name=name,
                    model=str(entry["model"]),
                    served_name=str(entry.get("served_name") or name),
                    vllm_args=tuple(str(a) for a in entry.get("vllm_args", ())),
                    description=str(entry.get("description", "")),
                    extra={k: v for k, v in entry.items() if k not in Variant.__dataclass_fields__},
                )
            except (KeyError, TypeError, AttributeError) as e:
                raise InputError(
                    f"variant {name!r} in {path} is malformed: needs at least 'model' ({e})"
                ) from e
    return out


def get_variant(name: str) -> Variant:
    variants = load_variants()
    if name not in variants:
        raise InputError(f"unknown variant {name!r}; known: {', '.join(sorted(variants))}")
    return variants[name]


def register_variant(variant: Variant, path: Path | None = None) -> Path:
    """Add or replace ``variant`` in the user registry (atomic write)."""
    path = Path(path) if path else user_registry_path()
    data = _read(path)
    entry = asdict(variant)
    entry.pop("name")
    entry |= entry.pop("extra")
    entry["vllm_args"] = list(variant.vllm_args)
    data[variant.name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(data, f, indent=2)
    os.replace(f.name, path)
    return path
