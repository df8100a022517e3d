import re
from pathlib import Path

import pytest
import yaml

from pipeline.core.config import Params, ParamsError, load_params, load_params_dict

ROOT = Path(__file__).resolve().parents[2]


def test_repository_params_load_and_match_defaults():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params)
    assert p == Params(), "params.yaml and the dataclass defaults have drifted apart"


def test_missing_keys_take_defaults():
    p = load_params_dict({"lbo": {}})
    assert p.lbo.k == 64 and p.template.source == "anny"


@pytest.mark.parametrize("raw, key, words", [
    ({"model": {"parts": 0}}, "model.parts", "out of range"),
    ({"modle": {"parts": 5}}, "modle", "unknown key"),
    ({"lbo": {"k": -3}}, "lbo.k", "out of range"),
    ({"lbo": {"k": 0}}, "lbo.k", "[2, 4096]"),
    ({"lbo": {"k": 2.5}}, "lbo.k", "wrong type"),
    ({"lbo": {"k": True}}, "lbo.k", "wrong type"),
    ({"lbo": {"kk": 3}}, "lbo.kk", "known keys: k"),
    ({"template": {"source": "smal"}}, "template.source", "'anny', 'smpl'"),
    ({"template": {"cse_dim": 0}}, "template.cse_dim", "[1, 256]"),
    ({"common": {"seed": -1}}, "common.seed", "out of range"),
    ({"common": "x"}, "common", "must be a mapping"),
])
def test_bad_values_name_the_key_and_the_allowed_range(raw, key, words):
    with pytest.raises(ParamsError) as e:
        load_params_dict(raw)
    assert key in str(e.value) and words in str(e.value)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lbo: {k: -3}\n")
    with pytest.raises(ParamsError, match=r"bad.yaml.*lbo.k"):
        load_params(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("lbo: [\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(broken)


def test_every_key_in_params_yaml_is_documented():
    text = (ROOT / "params.yaml").read_text()
    raw = yaml.safe_load(text)
    for section, keys in raw.items():
        for key in keys:
            line = next(l for l in text.splitlines() if re.match(rf"\s+{key}:", l))
            assert "#" in line, f"params.yaml: {section}.{key} has no comment"


@pytest.mark.parametrize("raw, words", [
    ({"model": {"lbo_basis": 40}, "lbo": {"k": 32}}, ("model.lbo_basis = 40 > lbo.k = 32", "raise lbo.k to >= 40")),
    ({"model": {"parts": 12, "lbo_basis": 8}}, ("model.parts = 12", "model.lbo_basis = 8", "lbo.k = 64",
                                               "segmentation_init: random")),
    ({"densepose": {"kind": "cse"}}, ("densepose.kind = 'cse'", "set synthetic.cse: true")),
    ({"densepose": {"kind": "cse", "source": "precomputed"}, "precomputed": {"format": "iuv_png"}},
     ("densepose.kind = 'cse'", "precomputed.format: iuv_png")),
    ({"loss": {"oracle_3d": 1.0}, "densepose": {"source": "detectron2"}}, ("loss.oracle_3d = 1.0", "densepose.source")),
    ({"loss": {"oracle_3d": 1.0}, "synthetic": {"projection": "perspective"}},
     ("loss.oracle_3d", "synthetic.projection: orthographic")),
    ({"eval": {"split": "val"}}, ("eval.split = 'val'", "train.val_share")),
])
def test_cross_section_constraints_name_both_keys_and_the_fix(raw, words):
    with pytest.raises(ParamsError) as e:
        load_params_dict(raw)
    for w in words:
        assert w in str(e.value), str(e.value)


@pytest.mark.parametrize("raw", [
    {"model": {"parts": 64, "lbo_basis": 64}, "lbo": {"k": 64}},
    {"model": {"parts": 64, "segmentation_init": "random"}},
    {"model": {"parts": 64, "type": "no_parts"}},
    {"densepose": {"kind": "cse"}, "synthetic": {"cse": True}},
    {"densepose": {"kind": "cse", "source": "precomputed"}},  # a dump may hold CSE output
    {"densepose": {"kind": "cse", "source": "detectron2"}},  # a CSE model: known from its config
    {"eval": {"split": "val"}, "train": {"val_share": 0.1}},
    {"loss": {"oracle_3d": 1.0}},
])
def test_consistent_combinations_load(raw):
    load_params_dict(raw)


def test_every_problem_is_reported_in_one_message(tmp_path):
    """model.parts: 64 with lbo.k: 2 breaks two constraints: both named; key errors are listed together."""
    with pytest.raises(ParamsError) as e:
        load_params_dict({"model": {"parts": 64}, "lbo": {"k": 2}, "densepose": {"kind": "cse"}})
    msg = str(e.value)
    assert msg.startswith("params: 3 problems:") and "model.lbo_basis = 32 > lbo.k = 2" in msg
    assert "model.parts = 64" in msg and "synthetic.cse: true" in msg
    bad = tmp_path / "bad.yaml"
    bad.write_text("lbo: {k: -3}\nmodel: {parts: 0.5, colour: red}\n")
    with pytest.raises(ParamsError) as e:
        load_params(bad)
    msg = str(e.value)
    assert msg.startswith(f"{bad}: params: 3 problems:")
    assert "lbo.k = -3 is out of range" in msg and "model.parts = 0.5 has the wrong type" in msg
    assert "unknown key model.colour" in msg


def test_hostile_values_are_params_errors(tmp_path):
    for raw, words in [({"lbo": {"k": 10**5000}}, "lbo.k = <an integer of"),
                       ({"train": {"lr": 10**400}}, "out of range"),
                       ({"train": {"lr": float("nan")}}, "not a finite number"), ({1: 2}, "unknown key 1"),
                       ({"lbo": {"k": "x" * 500}}, "lbo.k = 'xxx")]:
        with pytest.raises(ParamsError) as e:
            load_params_dict(raw)
        assert words in str(e.value) and len(str(e.value)) < 400, str(e.value)
    for text in ("lbo: {k: 2001-13-45}\n", "lbo: [\n"):
        (tmp_path / "p.yaml").write_text(text)
        with pytest.raises(ParamsError, match="not valid YAML"):
            load_params(tmp_path / "p.yaml")
    (tmp_path / "p.yaml").write_bytes(b"lbo: {k: \xff}\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "p.yaml")


def test_a_key_given_twice_is_refused_naming_the_file_key_and_lines(tmp_path):
    from pipeline.core.errors import InputError

    path = tmp_path / "params.yaml"
    path.write_text("train:\n  epochs: 3\n  lr: 0.001\n  epochs: 5\nlbo: {k: 16}\nlbo: {k: 8}\n")
    with pytest.raises(InputError) as e:
        load_params(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: keys given twice: train.epochs (lines 2 and 4); lbo (lines 5 and 6)")
    path.write_text("train:\n  epochs: 3\nmodel:\n  epochs: 3\n")  # the same name in two sections is fine
    with pytest.raises(ParamsError, match="unknown key model.epochs"):
        load_params(path)
