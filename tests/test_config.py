import re
from pathlib import Path

import pytest
import yaml

from pipeline.config import Params, ParamsError, load_params, load_params_dict

ROOT = Path(__file__).resolve().parents[1]


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
