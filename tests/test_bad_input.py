"""Every bad input of the spine: one paragraph, the right exit code, no traceback, no report."""

import json

import pytest
from conftest import tiny_model

from memaudit.lab.tokenizer import train_bpe


def _run(run_cli, config, tmp_path):
    report = tmp_path / "report.json"
    code, out, err = run_cli("run", config, "--json", report)
    assert "Traceback" not in err
    assert not report.exists(), "no report may be written for bad input"
    return code, err


def test_malformed_yaml(write_config, run_cli, tmp_path):
    code, err = _run(run_cli, write_config("series: [\n  - local: x\n datasets: {"), tmp_path)
    assert code == 2 and "not valid YAML" in err


def test_yaml_that_is_not_a_mapping(write_config, run_cli, tmp_path):
    code, err = _run(run_cli, write_config("- just\n- a list\n"), tmp_path)
    assert code == 2 and "must be a YAML mapping" in err


def test_missing_config_file(run_cli, tmp_path):
    code, err = _run(run_cli, tmp_path / "nope.yaml", tmp_path)
    assert code == 2 and "No configuration file" in err


def test_unknown_key_suggests_the_closest(basic_config, run_cli, tmp_path, text_file, make_series, write_config):
    config = write_config({"series": [{"local": str(make_series())}],
                           "datasets": [{"name": "t", "path": str(text_file), "rol": "train"}]})
    code, err = _run(run_cli, config, tmp_path)
    assert code == 2 and "unknown key 'rol'" in err and "Did you mean 'role'?" in err


def test_unknown_probe_suggests_the_closest(basic_config, run_cli, tmp_path):
    code, err = _run(run_cli, basic_config(probes={"memorisation": {}}), tmp_path)
    assert code == 2 and "Unknown probe 'memorisation'" in err and "Did you mean 'memorization'?" in err


def test_unknown_probe_parameter(basic_config, run_cli, tmp_path):
    code, err = _run(run_cli, basic_config(probes={"memorization": {"kk": 3}}), tmp_path)
    assert code == 2 and "no parameter 'kk'" in err and "Did you mean 'k'?" in err


def test_check_on_unknown_metric(basic_config, run_cli, tmp_path):
    code, err = _run(run_cli, basic_config(checks=[{"metric": "memorization.MM", "max": 1}]), tmp_path)
    assert code == 2 and "no metric 'MM'" in err and "Did you mean 'M'?" in err


def test_missing_data_file(basic_config, run_cli, tmp_path):
    code, err = _run(run_cli, basic_config(datasets=[{"name": "d", "path": str(tmp_path / "missing.txt")}]), tmp_path)
    assert code == 2 and "no file at" in err


def test_empty_data_file(basic_config, run_cli, tmp_path):
    (tmp_path / "empty.txt").write_text("  \n\n")
    code, err = _run(run_cli, basic_config(datasets=[{"name": "d", "path": str(tmp_path / "empty.txt")}]), tmp_path)
    assert code == 2 and "is empty" in err


def test_data_too_short_for_one_sample(basic_config, run_cli, tmp_path):
    (tmp_path / "short.txt").write_text("A few words only.")
    config = basic_config(datasets=[{"name": "d", "path": str(tmp_path / "short.txt"), "seq_len": 64}])
    code, err = _run(run_cli, config, tmp_path)
    assert code == 2 and "too few for one sample of seq_len=64" in err


def test_text_that_tokenizes_to_nothing(basic_config, run_cli, tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": ""}) + "\n" + json.dumps({"text": ""}) + "\n")
    code, err = _run(run_cli, basic_config(datasets=[{"name": "d", "path": str(tmp_path / "d.jsonl")}]), tmp_path)
    assert code == 2 and "tokenizes to nothing" in err


def test_non_utf8_data_file(basic_config, run_cli, tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 100)
    code, err = _run(run_cli, basic_config(datasets=[{"name": "d", "path": str(tmp_path / "latin1.txt")}]), tmp_path)
    assert code == 2 and "not UTF-8" in err


def test_missing_local_checkpoint_folder(basic_config, run_cli, tmp_path):
    code, err = _run(run_cli, basic_config(series=[{"local": str(tmp_path / "no-such-series")}]), tmp_path)
    assert code == 4 and "no folder at" in err


def test_tokenizer_differing_across_the_series(make_series, text_file, write_config, run_cli, tmp_path, corpus_text):
    root = make_series(steps=(1, 2))
    other = train_bpe([corpus_text[:3000]], vocab_size=300)
    model = tiny_model("gpt_neox", len(other), seed=5)
    model.save_pretrained(root / "step-3")
    other.save_pretrained(root / "step-3")
    config = write_config({"series": [{"local": str(root)}], "datasets": [{"name": "d", "path": str(text_file)}]})
    code, err = _run(run_cli, config, tmp_path)
    assert code == 2 and "tokenizer of step-3 differs" in err


def test_pretokenized_data_from_another_tokenizer(basic_config, run_cli, tmp_path):
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({"tokens": [10**6] * 40}) for _ in range(3)))
    code, err = _run(run_cli, basic_config(datasets=[{"name": "d", "path": str(tmp_path / "d.jsonl"), "seq_len": 32}]),
                     tmp_path)
    assert code == 2 and "another tokenizer" in err


@pytest.mark.parametrize("series, message", [
    ([{"local": "a", "hub": "b/c"}], "exactly one of"),
    ([{"local": "a", "revisions": ["step1"]}], "'revisions' belongs to a hub series"),
    ([], "at least 1"),
])
def test_invalid_series_entries(series, message, write_config, run_cli, tmp_path):
    config = write_config({"series": series, "datasets": [{"name": "d", "path": "x.txt"}]})
    code, err = _run(run_cli, config, tmp_path)
    assert code == 2 and message in err
