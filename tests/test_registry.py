"""memaudit/engine/registry.py: collection by argument name, parameters, -k."""

import pytest

from memaudit.engine.registry import (
    collect,
    matches_keyword,
    select,
    standard_probe_dir,
)
from memaudit.errors import ConfigError, NothingCollected


def test_standard_probes_are_collected():
    probes = {p.name: p for p in collect([standard_probe_dir()])}
    assert probes["memorization"].kind == "checkpoint"
    assert probes["memorization"].products == ["hits", "logprobs"]
    assert probes["memorization"].params == {"k": 32, "m": 32, "per_sample": False}
    assert probes["memorization_series"].kind == "series"


def test_unknown_argument_is_a_collection_error_with_suggestion(tmp_path):
    (tmp_path / "bad.py").write_text("from memaudit import probe\n@probe\ndef p(hit):\n    return {}\n")
    with pytest.raises(ConfigError, match=r"asks for 'hit'.*Did you mean 'hits'\?"):
        collect([tmp_path])


def test_import_error_in_a_probe_file_names_the_file(tmp_path):
    (tmp_path / "broken.py").write_text("import nothing_of_that_name\n")
    with pytest.raises(ConfigError, match="broken.py.*ModuleNotFoundError"):
        collect([tmp_path])


def test_files_starting_with_underscore_are_skipped(tmp_path):
    (tmp_path / "_helpers.py").write_text("raise RuntimeError('must not be imported')\n")
    (tmp_path / "mine.py").write_text("from memaudit import probe\n@probe(name='x')\ndef p(hits, scale: float = 2.0):\n"
                                      "    return {'v': float(hits.mean()) * scale}\n")
    probes = collect([tmp_path])
    assert [p.name for p in probes] == ["x"] and probes[0].params == {"scale": 2.0}


def test_yaml_parameters_override_defaults():
    probes = collect([standard_probe_dir()])
    chosen = {p.name: p for p in select(probes, {"memorization": {"k": 8}})}
    assert chosen["memorization"].params == {"k": 8, "m": 32, "per_sample": False} and "memorization_series" in chosen
    only = select(probes, {}, [("select:", "memorization"), ("-k", "not series")])
    assert [p.name for p in only] == ["memorization"]
    assert {p.name: p for p in probes}["memorization"].params["k"] == 32  # the collected probe is untouched


@pytest.mark.parametrize("expr, name, expected", [
    ("memo", "memorization", True), ("not series", "memorization_series", False),
    ("memo and not series", "memorization", True), ("pos or forgetting", "memorization", False),
    ("(pos or memo) and not series", "memorization", True)])
def test_keyword_expressions(expr, name, expected):
    assert matches_keyword(expr, name) is expected


def test_bad_keyword_expression():
    with pytest.raises(ConfigError, match="not a valid expression"):
        matches_keyword("memo and", "memorization")


def test_nothing_selected_is_exit_5():
    with pytest.raises(NothingCollected) as e:
        select(collect([standard_probe_dir()]), None, [("-k", "zzz")])
    assert e.value.exit_code == 5
