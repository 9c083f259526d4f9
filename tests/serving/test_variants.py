import json
import os
import subprocess
import sys

import pytest

from conftest import scene
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
    assert "tiny" in load_variants()  # a broken user file leaves the packaged variants working
    with pytest.raises(InputError, match="unknown variant 'x'.*malformed, left out: .*variants.json"):
        get_variant("x")


@pytest.mark.parametrize(
    "entry, why",
    [
        ({"served_name": "b"}, "'model' must name a folder"),
        ({"model": None}, "'model' must name a folder"),
        ({"model": "builtin:tiny", "served_name": "../../etc/x"}, "'served_name' '../../etc/x' must be"),
        ({"model": "builtin:tiny", "vllm_args": "--dtype float32"}, "'vllm_args' must be a list of strings"),
        ({"model": "builtin:tiny", "vllm_args": ["--max-model-len", 512]}, "'vllm_args' must be a list"),
        ("builtin:tiny", "an entry must be a JSON object"),
    ],
)
def test_a_malformed_user_entry_is_named_while_the_others_work(monkeypatch, tmp_path, capsys, entry, why):
    path = tmp_path / "variants.json"
    monkeypatch.setenv("SRICE_VARIANTS", str(path))
    path.write_text(json.dumps({"broken": entry, "mine": {"model": "builtin:tiny", "served_name": "mine"}}))
    with pytest.raises(InputError, match="variant 'broken' is malformed: " + why.replace("(", r"\(")):
        get_variant("broken")
    assert get_variant("mine").served_name == "mine" and get_variant("tiny").model == "builtin:tiny"
    assert "malformed variant registry entries left out: broken" in capsys.readouterr().err


def test_a_missing_model_folder_is_not_taken_for_a_hub_id(tmp_path):
    """Only an org/name id may reach the network; a path that does not exist is an error, and the
    offline switches stay on for it."""
    typo = Variant("typo", str(tmp_path / "no-such-model"), "typo")
    assert not typo.is_hub
    with pytest.raises(InputError, match="model folder not found"):
        typo.model_path()
    assert not Variant("none", "None", "none").is_hub and Variant("hub", "org/model", "hub").is_hub


def test_the_server_log_name_stays_in_the_log_folder(tmp_path, monkeypatch):
    from srice.serving.launcher import VllmServer

    monkeypatch.setenv("SRICE_CACHE", str(tmp_path))
    server = VllmServer(tmp_path, served_name="../../escape", executable="/bin/false", startup_timeout=5)
    with pytest.raises(Exception):  # noqa: B017 - /bin/false exits; only the log path matters here
        server.start()
    assert server.log_path.parent == tmp_path / "logs"  # sanitised: "vllm-_.._escape-PORT.log"


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


def test_a_malformed_variant_entry_is_named_and_the_others_keep_working(tmp_path):
    registry = tmp_path / "variants.json"
    registry.write_text(json.dumps({
        "bad-args": {"model": "builtin:tiny", "vllm_args": "--dtype float32"},
        "escape": {"model": "builtin:tiny", "served_name": "../../x"},
        "nothing": {"model": None},
        "mine": {"model": "builtin:tiny", "served_name": "mine"},
    }))  # fmt: skip
    env = os.environ | {"SRICE_VARIANTS": str(registry)}
    picture = tmp_path / "p.png"
    scene().save(picture)
    ask = [sys.executable, "-m", "srice", "ask", "--image", str(picture), "--question", "What colour is it?",
           "--tools", "", "--backend", "transformers"]  # fmt: skip
    ok = subprocess.run([*ask, "--variant", "mine"], capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "malformed variant registry entries left out: bad-args" in ok.stderr
    for name, why in (("bad-args", "must be a list of strings"), ("escape", "'served_name' '../../x'"),
                      ("nothing", "'model' must name")):  # fmt: skip
        r = subprocess.run([*ask, "--variant", name], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 1 and f"variant {name!r} is malformed" in r.stderr and why in r.stderr


def test_srice_variants_lists_adds_and_removes_without_editing_json(tmp_path):
    env = os.environ | {"SRICE_VARIANTS": str(tmp_path / "variants.json")}
    folder = tmp_path / "mymodel"
    folder.mkdir()
    (folder / "config.json").write_text("{}")

    def srice(*args):
        return subprocess.run([sys.executable, "-m", "srice", "variants", *args], capture_output=True,
                              text=True, env=env, timeout=120)  # fmt: skip

    added = srice("add", "mine", "--model", str(folder), "--vllm-arg=--max-model-len", "--vllm-arg=2048")
    assert added.returncode == 0, added.stderr
    listed = json.loads(srice("list", "--json").stdout)
    rows = {r["name"]: r for r in listed["variants"]}
    assert rows["mine"] == {"name": "mine", "source": "user", "model": str(folder.resolve()),
                            "served_name": "mine", "calib": None}  # fmt: skip
    assert rows["toy"]["source"] == "packaged" and listed["problems"] == {}
    entry = json.loads((tmp_path / "variants.json").read_text())["mine"]
    assert entry["vllm_args"] == ["--max-model-len", "2048"]
    assert srice("remove", "toy").stderr.strip() == (
        "srice: error: variant 'toy' is packaged with srice and cannot be removed"
    )
    assert srice("add", "x", "--model", str(tmp_path / "none")).returncode == 1
    assert srice("remove", "mine").returncode == 0 and "mine" not in json.loads(
        (tmp_path / "variants.json").read_text()
    )


def test_every_refused_variant_entry_names_the_file_and_the_field(monkeypatch, tmp_path):
    from srice.serving import variants

    path = tmp_path / "variants.json"
    path.write_text(json.dumps({
        "../evil": {"model": "builtin:tiny"},
        "no-model": {"served_name": "x"},
        "args": {"model": "builtin:tiny", "vllm_args": [1, 2]},
        "served": {"model": "builtin:tiny", "served_name": "a b"},
        "calib": {"model": "builtin:tiny", "calib": 3},
        "described": {"model": "builtin:tiny", "description": {"not": "text"}},
        "entry": ["builtin:tiny"],
        "fine": {"model": "builtin:tiny"},
    }))  # fmt: skip
    monkeypatch.setenv("SRICE_VARIANTS", str(path))
    problems = variants.load_registry().problems
    for name, field in (("../evil", "name '../evil'"), ("no-model", "'model'"), ("args", "'vllm_args'"),
                        ("served", "'served_name'"), ("calib", "'calib'"), ("described", "'description'"),
                        ("entry", "entry must be a JSON object")):  # fmt: skip
        assert str(path) in problems[name] and field in problems[name], problems[name]
        if name != "../evil":
            with pytest.raises(InputError) as caught:
                get_variant(name)
            assert str(path) in str(caught.value) and field in str(caught.value)
    assert set(problems) == {"../evil", "no-model", "args", "served", "calib", "described", "entry"}
    # the packaged file is refused as a whole, naming itself and the field
    packaged = tmp_path / "packaged.json"
    packaged.write_text(json.dumps({"tiny": {"model": "builtin:tiny", "vllm_args": "--dtype float32"}}))
    monkeypatch.setattr(variants, "PACKAGED", packaged)
    with pytest.raises(InputError) as caught:
        variants.load_registry()
    assert str(packaged) in str(caught.value) and "'vllm_args'" in str(caught.value)
    for text, problem in (("[1]", "must hold a JSON object"), ("{", "is not valid JSON")):
        packaged.write_text(text)
        with pytest.raises(InputError, match=problem) as caught:
            variants.load_registry()
        assert str(packaged) in str(caught.value)
