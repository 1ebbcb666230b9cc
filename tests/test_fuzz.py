"""No user input ends in a traceback or exit 3: generated malformed configurations and data files.

Hypothesis mutates a valid configuration (values replaced by values of other types, keys removed,
unknown keys added, whole documents of random YAML) and writes data files of random content (text,
JSONL records, .npy arrays). Every run must end with a documented exit code other than 3 and no
traceback. The examples are few and the series tiny, so the whole file runs in well under a minute.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
import yaml
from conftest import tiny_model

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from memaudit.integrations.cli import main  # noqa: E402

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
tricky = st.sampled_from(["32", "-1", "nan", "", "step-999", "../x", "memorization(", -1, 0, 1.5, 2**64,
                          float("nan"), float("inf"), True, None, [], {}, [0.5, 2]]).map(copy.deepcopy)
values = st.one_of(tricky, st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=6))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A two-checkpoint series and a small text file, shared by every example."""
    from conftest import CORPUS

    from memaudit.lab.tokenizer import train_bpe

    root = tmp_path_factory.mktemp("fuzz")
    text = CORPUS.read_text(encoding="utf-8")[:4000]
    tokenizer = train_bpe([text], vocab_size=300)
    for i, step in enumerate((1, 2)):
        tiny_model("gpt_neox", len(tokenizer), seed=i).save_pretrained(root / "series" / f"step-{step}")
        tokenizer.save_pretrained(root / "series" / f"step-{step}")
    (root / "train.txt").write_text(text, encoding="utf-8")
    return root


def _valid(world) -> dict:
    return {"series": [{"name": "s", "local": str(world / "series")}],
            "datasets": [{"name": "train", "path": str(world / "train.txt"), "seq_len": 16, "max_samples": 4}],
            "probes": {"memorization": {"k": 4, "m": 4}},
            "checks": [{"metric": "memorization.M", "dataset": "train", "max": 1.0}],
            "run": {"batch_size": 4, "device": "cpu"}, "select": "memorization"}


def _paths(doc, prefix=()):
    """Every (path of keys/indices) in a nested document, the leaves (scalar values) first."""
    inner, leaves = [], []

    def walk(node, path):
        (inner if isinstance(node, (dict, list)) else leaves).append(path)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            walk(v, (*path, k))

    walk(doc, prefix)
    return sorted(leaves, key=repr) + sorted(inner, key=repr)


def _mutate(doc, path, how, value):
    if not path:
        return value
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if how == "replace":
        parent[last] = value
    elif how == "delete":
        del parent[last]
    elif isinstance(parent, dict):  # add an unknown key beside it
        parent[f"zz_{last}"] = value
    else:
        parent.append(value)
    return doc


def _run(world, config_text: str, tmp_path, name: str) -> tuple[int, str]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(config_text, encoding="utf-8")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", str(path), "--json", str(tmp_path / f"{name}.json"), "-q"])
    return code, err.getvalue()


def _assert_handled(code, err):
    assert code in (0, 1, 2, 4, 5), err
    assert "Traceback" not in err, err


@SETTINGS
@given(data=st.data(), n=st.integers(1, 3))
def test_mutated_configurations_never_crash(world, tmp_path, data, n):
    doc = _valid(world)
    for _ in range(n):  # one to three mutations: a value of another type, a key removed or an unknown one added
        path = data.draw(st.sampled_from(_paths(doc)))
        how = data.draw(st.sampled_from(["replace", "replace", "delete", "add"] if path else ["replace"]))
        doc = _mutate(doc, path, how, data.draw(values))
        if not isinstance(doc, dict):
            break
    text = yaml.safe_dump(doc, allow_unicode=True) if not isinstance(doc, float) else str(doc)
    _assert_handled(*_run(world, text, tmp_path, "mutated"))


@SETTINGS
@given(text=st.text(max_size=200))
def test_random_yaml_documents_never_crash(world, tmp_path, text):
    _assert_handled(*_run(world, text, tmp_path, "random"))


records = st.one_of(
    st.dictionaries(st.sampled_from(["text", "tokens", "id", "seen_at_step", "x"]), values, max_size=3),
    st.fixed_dictionaries({"tokens": st.lists(st.integers(0, 299), min_size=14, max_size=20)}),
    st.fixed_dictionaries({"tokens": st.lists(st.one_of(st.integers(-5, 400), st.floats(), st.booleans()),
                                              min_size=14, max_size=20)}),
    st.fixed_dictionaries({"text": st.text(min_size=1, max_size=80)}), values)


@SETTINGS
@given(kind=st.sampled_from(["txt", "jsonl", "npy"]), lines=st.lists(records, min_size=0, max_size=4),
       raw=st.binary(max_size=64), shape=st.lists(st.integers(0, 20), min_size=0, max_size=3),
       dtype=st.sampled_from(["int64", "uint64", "int8", "float32", "bool"]))
def test_random_data_files_never_crash(world, tmp_path, kind, lines, raw, shape, dtype):
    data = tmp_path / f"data.{kind}"
    if kind == "txt":
        data.write_bytes(raw)
    elif kind == "jsonl":
        data.write_text("\n".join(json.dumps(r, allow_nan=True) for r in lines), encoding="utf-8")
    else:
        array = np.random.default_rng(0).integers(-3, 2**20, size=shape).astype(dtype)
        np.save(data, array)
    doc = _valid(world)
    doc["datasets"][0]["path"] = str(data)
    _assert_handled(*_run(world, yaml.safe_dump(doc), tmp_path, "data"))


@SETTINGS
@given(keyword=st.lists(st.sampled_from(["memo", "series", "and", "or", "not", "(", ")", "x(y", "pos"]),
                        min_size=1, max_size=6).map(" ".join),
       flag=st.sampled_from(["--batch-size", "--tolerance", "--device", "--dtype"]),
       value=st.one_of(st.sampled_from(["-3", "0", "nan", "inf", "1e400", "cuda:9", "cpu", "bfloat16", "2"]),
                       st.text(max_size=6)))
def test_random_command_lines_never_crash(world, tmp_path, keyword, flag, value):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_valid(world)), encoding="utf-8")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", str(path), "-q", "-k", keyword, f"{flag}={value}"])
    _assert_handled(code, err.getvalue())


@pytest.fixture(scope="module")
def live_world(world):
    """A model in memory and its tokenizer, for the Python API."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(world / "series" / "step-1"),
            AutoTokenizer.from_pretrained(world / "series" / "step-1"))


records = st.lists(st.one_of(values, st.lists(st.integers(-5, 400), min_size=0, max_size=20),
                             st.text(max_size=80)), max_size=4)
near_valid = st.fixed_dictionaries(
    {"data": st.lists(st.one_of(st.lists(st.integers(0, 299), min_size=4, max_size=20), st.text(min_size=20)),
                      min_size=1, max_size=4)},
    optional={"seq_len": st.integers(2, 12), "role": st.sampled_from(["train", "valid", "forget", "holdout"])})
entries = st.one_of(near_valid, values, records, st.fixed_dictionaries(
    {"data": records}, optional={"seq_len": st.one_of(st.integers(-2, 20), values),
                                 "role": st.sampled_from(["train", "valid", "forget", "holdout", "canary", "x"]),
                                 "max_samples": st.one_of(st.integers(-1, 3), values)}))


@SETTINGS
@given(datasets=st.one_of(values, st.dictionaries(st.text(max_size=5), entries, max_size=2)),
       kwargs=st.dictionaries(st.sampled_from(["step", "tokens_seen", "batch_size", "probes", "select", "params",
                                               "show_text"]), st.one_of(values, st.just(["memorization"]),
                                                                        st.integers(0, 9)), max_size=2))
def test_audit_model_never_crashes_on_generated_arguments(live_world, datasets, kwargs):
    """memaudit.audit_model with generated data sets and keyword values: a result or a MemauditError, nothing
    else (no AttributeError, TypeError, ...)."""
    import memaudit
    from memaudit.errors import MemauditError

    model, tokenizer = live_world
    try:
        memaudit.audit_model(model, tokenizer, datasets, **kwargs)
    except MemauditError as e:
        assert e.exit_code != 3, str(e)


names = st.one_of(st.text(max_size=12), st.sampled_from(["[red]x[/red]", "valid[/i]", "=1+1", "$\\frac{", "a\x1b[2Jb",
                                                         "\x00\x07", "\u202e", ":x:", "[k=32,m=32]", "@cmd", "-1"]))


@pytest.fixture(scope="module")
def saved_report(world, tmp_path_factory):
    """A real report of the fuzz world, and its configuration."""
    out = tmp_path_factory.mktemp("report")
    config = out / "c.yaml"
    config.write_text(yaml.safe_dump(_valid(world)), encoding="utf-8")
    assert main(["run", str(config), "--json", str(out / "r.json"), "-q"]) in (0, 1)
    return json.loads((out / "r.json").read_text()), config


def _main(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@settings(SETTINGS, max_examples=30)
@given(data=st.data(), n=st.integers(1, 3))
def test_mutated_reports_never_crash_show_plot_or_compare(saved_report, tmp_path, data, n):
    """Reports others wrote: values of other types, NaN, infinities, huge integers, hostile names, keys gone."""
    raw, config = saved_report
    doc = copy.deepcopy(raw)
    for _ in range(n):
        path = data.draw(st.sampled_from(_paths(doc)))
        doc = _mutate(doc, path, data.draw(st.sampled_from(["replace", "delete", "add"])),
                      data.draw(st.one_of(values, names)))
    report = tmp_path / "m.json"
    report.write_text(json.dumps(doc), encoding="utf-8")
    for args in (("show", report), ("show", report, "-q", "--html", tmp_path / "m.html", "--csv", tmp_path / "m.csv"),
                 ("plot", report, "--out", tmp_path / "figs"), ("run", config, "--compare", report, "-q")):
        code, out, err = _main(*args)
        _assert_handled(code, err)
        assert "\x1b" not in out + err


@settings(SETTINGS, max_examples=6)
@given(series=names, dataset=names)
def test_generated_names_never_break_an_output(world, tmp_path, series, dataset):
    """Any series and data set name reaches the terminal, HTML, JUnit XML and CSV as data."""
    import xml.etree.ElementTree as ET

    config = _valid(world)
    config["series"][0]["name"] = series
    config["datasets"][0]["name"] = dataset
    config["checks"][0]["dataset"] = dataset
    path = tmp_path / "names.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    code, out, err = _main("run", path, "--json", tmp_path / "n.json", "--html", tmp_path / "n.html",
                           "--junit-xml", tmp_path / "n.xml")
    _assert_handled(code, err)
    assert "\x1b" not in out + err
    if code in (0, 1):
        ET.parse(tmp_path / "n.xml")
        code, out, err = _main("show", tmp_path / "n.json", "--csv", tmp_path / "n.csv")
        _assert_handled(code, err)
        assert not any(line.startswith(("=", "+", "@")) for line in (tmp_path / "n.csv").read_text().splitlines())
