import json

import pytest

from srice.errors import InputError
from srice.serving.variants import Variant, get_variant, load_variants, register_variant


def test_packaged_registry_has_tiny_and_a_hub_example(monkeypatch, tmp_path):
    monkeypatch.setenv("SRICE_VARIANTS", str(tmp_path / "none.json"))
    variants = load_variants()
    assert variants["tiny"].model == "builtin:tiny" and not variants["tiny"].is_hub
    assert variants["qwen2.5-vl-7b"].is_hub
    assert "127.0.0.1" not in " ".join(variants["tiny"].vllm_args)  # the launcher owns host and port


def test_user_registry_overlays_and_register_round_trips(monkeypatch, tmp_path):
    path = tmp_path / "variants.json"
    monkeypatch.setenv("SRICE_VARIANTS", str(path))
    model_dir = tmp_path / "pruned"
    model_dir.mkdir()
    register_variant(
        Variant(
            "tiny-pruned", str(model_dir), "tiny-pruned", ("--dtype", "float32"), extra={"method": "wanda"}
        )
    )
    register_variant(Variant("tiny", "builtin:tiny", "overridden"))
    v = get_variant("tiny-pruned")
    assert v.model_path() == str(model_dir) and not v.is_hub and v.vllm_args == ("--dtype", "float32")
    assert v.extra == {"method": "wanda"}
    assert get_variant("tiny").served_name == "overridden"
    assert set(json.loads(path.read_text())) == {"tiny-pruned", "tiny"}


def test_bad_registry_files_and_names(monkeypatch, tmp_path):
    path = tmp_path / "variants.json"
    monkeypatch.setenv("SRICE_VARIANTS", str(path))
    with pytest.raises(InputError, match="unknown variant 'x'; known: .*tiny"):
        get_variant("x")
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_variants()
    path.write_text(json.dumps({"broken": {"served_name": "b"}}))
    with pytest.raises(InputError, match="'broken'.*needs at least 'model'"):
        load_variants()


def test_builtin_toy_and_variant_calibration_dirs(tmp_path):
    """The toy bundle is found through $SRICE_TOY_DIR (read at import, so set in a subprocess);
    a missing bundle is a clear error naming the command that builds it."""
    import subprocess
    import sys

    probe = (
        "from srice.serving.variants import Variant\n"
        "v = Variant('toy', 'builtin:toy', 'srice-toy', extra={'calib': 'builtin:toy'})\n"
        "print(v.model_path()); print(v.calibration_dir())\n"
    )
    (tmp_path / "mllm").mkdir()
    (tmp_path / "calib").mkdir()
    env = {"PATH": "/usr/bin:/bin", "SRICE_TOY_DIR": str(tmp_path), "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(tmp_path / "mllm"), str(tmp_path / "calib")]
    env["SRICE_TOY_DIR"] = str(tmp_path / "missing")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "srice train-toy" in r.stderr
    assert Variant("x", "/m", "x", extra={"calib": str(tmp_path)}).calibration_dir() == str(tmp_path)
    assert Variant("x", "/m", "x").calibration_dir() is None
