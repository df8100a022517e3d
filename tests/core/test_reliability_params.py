"""Reliability of the params loader: hostile values for every key of every section.

For every key (the fields of the section dataclasses, nested ``synthetic.corruption`` included):
values of the wrong type, out of range or not among the choices, unknown keys and non-mapping
sections each raise a :class:`ParamsError` naming the key; no value raises anything else. The
constraints between sections are checked as properties over their keys' ranges.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import tempfile
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pipeline.core.config import Params, ParamsError, load_params, load_params_dict

FUZZ = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _leaves(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], type, dict]]:
    """(key path, type, metadata) of every leaf field below dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            out += _leaves(typ, prefix + (f.name,))
        else:
            out.append((prefix + (f.name,), typ, dict(f.metadata)))
    return out


def _sections(cls: type = Params, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], type]]:
    """(key path, dataclass) of every section, the top level included."""
    hints = typing.get_type_hints(cls)
    out = [(prefix, cls)]
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _sections(hints[f.name], prefix + (f.name,))
    return out


LEAVES = _leaves(Params)
SECTIONS = _sections()
IDS = [".".join(k) for k, _, _ in LEAVES]


def _nest(path: tuple[str, ...], value) -> dict:
    """{"a": {"b": value}} for path ("a", "b")."""
    for name in reversed(path):
        value = {name: value}
    return value


def _loads(raw) -> Params | ParamsError:
    """The loaded params, or the ParamsError; any other exception fails the test."""
    try:
        return load_params_dict(raw)
    except ParamsError as e:
        return e


BEYOND_DIGITS = st.builds(pow, st.just(10), st.integers(4400, 5000))  # too many digits for repr()
HUGE = st.one_of(st.integers(min_value=2**63, max_value=2**4000), BEYOND_DIGITS, st.builds(operator.neg, BEYOND_DIGITS))
TEXT = st.text(max_size=30)
LISTS = st.lists(st.integers() | TEXT, max_size=3)
DICTS = st.dictionaries(TEXT, st.integers() | TEXT, max_size=3)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
ANY = st.one_of(st.none(), st.booleans(), st.integers(), HUGE, FLOATS, TEXT, LISTS, DICTS)

WRONG_TYPE = {  # YAML values that are not of the field's type (an int is a float, a bool is nothing else)
    bool: st.one_of(st.none(), st.integers(), HUGE, FLOATS, TEXT, LISTS, DICTS),
    int: st.one_of(st.none(), st.booleans(), FLOATS, TEXT, LISTS, DICTS),
    float: st.one_of(st.none(), st.booleans(), TEXT, LISTS, DICTS),
    str: st.one_of(st.none(), st.booleans(), st.integers(), HUGE, FLOATS, LISTS, DICTS),
}


def _out_of_range(typ: type, meta: dict) -> st.SearchStrategy | None:
    """Values of the right type outside [lo, hi], NaN and Inf for floats, or other strings than the choices."""
    lo, hi = meta.get("lo"), meta.get("hi")
    if meta.get("choices"):
        return TEXT.filter(lambda s: s not in meta["choices"])
    outside = HUGE.filter(lambda v: (lo is not None and v < lo) or (hi is not None and v > hi))
    if typ is int and (lo is not None or hi is not None):
        parts = [st.integers(max_value=int(lo) - 1)] if lo is not None else []
        parts += [st.integers(min_value=int(hi) + 1)] if hi is not None else []
        return st.one_of(*parts, outside)
    if typ is float:
        parts = [st.just(math.nan), st.just(math.inf), st.just(-math.inf), outside]
        if lo is not None:
            parts.append(st.floats(max_value=lo, exclude_max=True, allow_infinity=False, allow_nan=False))
        if hi is not None:
            parts.append(st.floats(min_value=hi, exclude_min=True, allow_infinity=False, allow_nan=False))
        return st.one_of(*parts)
    return None


def test_the_fuzzed_keys_are_all_of_params_yaml():
    """Every key of params.yaml is fuzzed here (and nothing else): the leaves come from the dataclasses."""
    text = (Path(__file__).resolve().parents[2] / "params.yaml").read_text()

    def flat(d, prefix=()):
        return [k for name, v in d.items() for k in (flat(v, prefix + (name,)) if isinstance(v, dict)
                                                      else [prefix + (name,)])]

    assert sorted(flat(yaml.safe_load(text))) == sorted(k for k, _, _ in LEAVES)
    assert len(LEAVES) > 100


@pytest.mark.parametrize("key, typ, meta", LEAVES, ids=IDS)
@FUZZ
@given(data=st.data())
def test_wrong_type_names_the_key(key, typ, meta, data):
    value = data.draw(WRONG_TYPE[typ])
    err = _loads(_nest(key, value))
    assert isinstance(err, ParamsError), f"{'.'.join(key)} = {value!r} was accepted"
    assert ".".join(key) in str(err) and "wrong type" in str(err), str(err)


@pytest.mark.parametrize("key, typ, meta", [(k, t, m) for k, t, m in LEAVES if _out_of_range(t, m) is not None],
                         ids=[i for i, (_, t, m) in zip(IDS, LEAVES) if _out_of_range(t, m) is not None])
@FUZZ
@given(data=st.data())
def test_out_of_range_or_unknown_choice_names_the_key_and_what_is_allowed(key, typ, meta, data):
    value = data.draw(_out_of_range(typ, meta))
    err = _loads(_nest(key, value))
    assert isinstance(err, ParamsError), f"{'.'.join(key)} = {value!r} was accepted"
    msg = str(err)
    assert ".".join(key) in msg and "allowed" in msg, msg
    assert any(w in msg for w in ("out of range", "not allowed", "not a finite number")), msg


@pytest.mark.parametrize("key, typ, meta", LEAVES, ids=IDS)
@FUZZ
@given(value=ANY)
def test_any_value_loads_or_names_the_key(key, typ, meta, value):
    """Whatever the value: it is loaded as given (a float as float) or refused naming the key; nothing
    else is raised (in particular nothing from inside a section: OverflowError, TypeError, ...)."""
    got = _loads(_nest(key, value))
    if isinstance(got, ParamsError):  # the key itself, or a constraint between it and other keys
        assert ".".join(key) in str(got), str(got)
        return
    loaded = got
    for name in key:
        loaded = getattr(loaded, name)
    expected = float(value) if typ is float else value  # an integer for a float key: its nearest float
    assert loaded == expected and type(loaded) is (float if typ is float else type(value))


@pytest.mark.parametrize("prefix, cls", SECTIONS, ids=[".".join(p) or "top" for p, _ in SECTIONS])
@FUZZ
@given(name=st.one_of(TEXT, st.integers(), st.booleans(), st.none()), value=ANY)
def test_unknown_key_names_it_and_the_known_keys(prefix, cls, name, value):
    known = [f.name for f in dataclasses.fields(cls)]
    assume(name not in known)
    err = _loads(_nest(prefix, {name: value}))
    assert isinstance(err, ParamsError)
    shown = name if isinstance(name, str) and len(name) <= 80 else repr(name)[:77]
    assert f"unknown key {'.'.join(prefix) + '.' if prefix else ''}{shown}" in str(err)
    assert "known keys: " + ", ".join(known) in str(err)


@pytest.mark.parametrize("prefix, cls", SECTIONS[1:], ids=[".".join(p) for p, _ in SECTIONS[1:]])
@FUZZ
@given(value=st.one_of(st.booleans(), st.integers(), FLOATS, TEXT, LISTS))
def test_a_section_that_is_not_a_mapping_is_named(prefix, cls, value):
    err = _loads(_nest(prefix, value))
    assert isinstance(err, ParamsError) and f"{'.'.join(prefix)} must be a mapping" in str(err)


@FUZZ
@given(raw=st.recursive(ANY, lambda inner: st.dictionaries(st.sampled_from(["lbo", "k", "model", "parts", "x"]) | TEXT,
                                                           inner, max_size=4), max_leaves=12))
def test_any_document_loads_or_is_a_params_error(raw):
    got = _loads(raw)
    assert isinstance(got, (Params, ParamsError))


@settings(max_examples=25, deadline=None)
@given(text=st.text(max_size=200) | st.binary(max_size=200))
@example("lbo: {k: 2001-13-45}")  # a date YAML cannot make: ValueError inside the parser
@example(b"lbo:\n  k: \xff\xfe")  # not UTF-8
@example("lbo: [\n")
@example("? [1, 2]\n: 3")  # an unhashable key
@example("- 1\n- 2")
def test_any_file_loads_or_is_a_params_error_naming_the_file(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
        try:
            load_params(path)
        except ParamsError as e:
            assert str(path) in str(e)


@FUZZ
@given(errors=st.lists(st.sampled_from(LEAVES), min_size=2, max_size=5, unique_by=lambda leaf: leaf[0]),
       data=st.data())
def test_every_bad_key_is_listed_in_one_message(errors, data):
    raw: dict = {}
    for key, typ, _ in errors:
        section = raw
        for name in key[:-1]:
            section = section.setdefault(name, {})
        section[key[-1]] = data.draw(WRONG_TYPE[typ])
    err = _loads(raw)
    assert isinstance(err, ParamsError) and f"{len(errors)} problems" in str(err)
    assert all(".".join(key) in str(err) for key, _, _ in errors)


# --- constraints between sections --------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(parts=st.integers(1, 64), basis=st.integers(1, 4096), k=st.integers(2, 4096),
       init=st.sampled_from(["spectral", "random"]), typ=st.sampled_from(["dp3d", "no_parts", "c3dpo"]))
def test_parts_basis_and_lbo_k(parts, basis, k, init, typ):
    got = _loads({"model": {"parts": parts, "lbo_basis": basis, "segmentation_init": init, "type": typ},
                  "lbo": {"k": k}})
    basis_ok = basis <= k
    parts_ok = typ != "dp3d" or init == "random" or parts <= min(basis, k)
    if basis_ok and parts_ok:
        assert isinstance(got, Params)
        return
    assert isinstance(got, ParamsError)
    msg = str(got)
    if not basis_ok:
        assert f"model.lbo_basis = {basis} > lbo.k = {k}" in msg and "raise lbo.k" in msg
    if not parts_ok:
        assert f"model.parts = {parts}" in msg and "lbo.k" in msg and "model.lbo_basis" in msg
        assert "segmentation_init: random" in msg
    assert ("2 problems" in msg) == (not basis_ok and not parts_ok)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["chart", "cse"]), source=st.sampled_from(["synthetic", "detectron2", "precomputed"]),
       cse=st.booleans(), fmt=st.sampled_from(["dump", "iuv_png"]))
def test_cse_kind_needs_cse_data(kind, source, cse, fmt):
    got = _loads({"densepose": {"kind": kind, "source": source}, "synthetic": {"cse": cse},
                  "precomputed": {"format": fmt}})
    bad = kind == "cse" and ((source == "synthetic" and not cse) or (source == "precomputed" and fmt == "iuv_png"))
    assert isinstance(got, ParamsError) == bad
    if bad:
        fix = "synthetic.cse: true" if source == "synthetic" else "precomputed.format: iuv_png"
        assert "densepose.kind" in str(got) and fix in str(got)


@settings(max_examples=40, deadline=None)
@given(oracle=st.sampled_from([0.0, 1.0]), source=st.sampled_from(["synthetic", "detectron2", "precomputed"]),
       projection=st.sampled_from(["orthographic", "perspective"]), split=st.sampled_from(["test", "val"]),
       share=st.sampled_from([0.0, 0.1]))
def test_oracle_and_val_split_need_their_data(oracle, source, projection, split, share):
    got = _loads({"loss": {"oracle_3d": oracle}, "densepose": {"source": source},
                  "synthetic": {"projection": projection}, "eval": {"split": split}, "train": {"val_share": share}})
    oracle_bad = oracle > 0 and (source != "synthetic" or projection != "orthographic")
    val_bad = split == "val" and share == 0
    assert isinstance(got, ParamsError) == (oracle_bad or val_bad)
    if oracle_bad:
        assert "loss.oracle_3d" in str(got) and ("densepose.source" in str(got) or "synthetic.projection" in str(got))
    if val_bad:
        assert "eval.split" in str(got) and "train.val_share" in str(got)
