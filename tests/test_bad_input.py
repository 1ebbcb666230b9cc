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


# --- silent wrong results and tracebacks found by trying bad input (issue "no silent wrong result") ---

def _data(basic_config, tmp_path, name, content, **extra):
    path = tmp_path / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return basic_config(datasets=[{"name": "d", "path": str(path), "seq_len": 16, **extra}])


@pytest.mark.parametrize("flag, value, message", [
    ("--batch-size", "-3", "--batch-size -3: Input should be greater than or equal to 1"),
    ("--batch-size", "0", "--batch-size 0"),
    ("--tolerance", "nan", "--tolerance nan"),
    ("--tolerance", "-1", "--tolerance -1.0"),
    ("--device", "gpu", "--device 'gpu'"),
    ("--processes", "0", "--processes 0"),
])
def test_bad_command_line_values_are_validated_like_the_yaml(flag, value, message, basic_config, run_cli, tmp_path):
    code, err = _run_args(run_cli, basic_config(), tmp_path, flag, value)
    assert code == 2 and message in err


def _run_args(run_cli, config, tmp_path, *args):
    report = tmp_path / "report.json"
    code, out, err = run_cli("run", config, "--json", report, *args)
    assert "Traceback" not in err
    assert not report.exists(), "no report may be written for bad input"
    return code, err


@pytest.mark.parametrize("device", ["cuda", "cuda:7"])
def test_an_unavailable_device_is_a_configuration_error(device, basic_config, run_cli, tmp_path):
    import torch

    if torch.cuda.is_available() and device == "cuda":
        pytest.skip("this machine has CUDA")
    code, err = _run_args(run_cli, basic_config(), tmp_path, "--device", device)
    assert code == 2 and "is not available on this machine" in err
    code, err = _run(run_cli, basic_config(run={"device": device}), tmp_path)
    assert code == 2 and "is not available on this machine" in err


@pytest.mark.parametrize("params, message", [
    ({"memorization": {"k": "32"}}, "k = '32': Input should be a valid integer"),
    ({"memorization": {"k": 0}}, "greater than or equal to 1"),
    ({"memorization": {"k": True}}, "valid integer"),
    ({"memorization_series": {"taus": [0.5, 2]}}, "taus[1] = 2"),
    ({"memorization_series": {"taus": 0.5}}, "valid list"),
    ({"membership": {"k_percent": float("nan")}}, "k_percent"),
    ({"memorization": "k=3"}, "probes.memorization: Input should be a valid dictionary"),
])
def test_probe_parameters_are_validated_against_their_annotations(params, message, basic_config, run_cli, tmp_path):
    code, err = _run(run_cli, basic_config(probes=params), tmp_path)
    assert code == 2 and message in err


@pytest.mark.parametrize("record, message", [
    ({"text": None}, "'text' must be a string, not null"),
    ({"text": 12345}, "'text' must be a string, not a number"),
    ({"tokens": [1.7] * 20}, "token 0 is a number (1.7); token ids must be integers"),
    ({"tokens": [True] * 20}, "token 0 is a boolean"),
    ({"tokens": ["5"] * 20}, "token 0 is a string"),
    ({"tokens": "1 2 3"}, "'tokens' must be a list of integer token ids"),
    ({"tokens": [2**70] * 20}, "which is no token id"),
    ({"tokens": [-7] + [1] * 19}, "token 0 is -7, which is no token id"),
    ({"tokens": [1] * 20, "id": None}, "'id' must be a string or an integer"),
    ({"tokens": [1] * 20, "seen_at_step": 1.5}, "'seen_at_step' must be an integer from 0 to 2**53"),
    ({"text": "a", "tokens": [1] * 20}, "either a 'text' or a 'tokens' field"),
    ({"text": "some text " * 30, "id": "a"}, "'id' and 'seen_at_step' belong to records with 'tokens'"),
    ({"text": "some text " * 30, "seen_at_step": 3}, "text records are joined and cut into samples"),
])
def test_data_records_are_never_coerced(record, message, basic_config, run_cli, tmp_path):
    good = json.dumps({"tokens": [1] * 20}) if "tokens" in record else json.dumps({"text": "fine words " * 20})
    config = _data(basic_config, tmp_path, "d.jsonl", good + "\n" + json.dumps(record) + "\n")
    code, err = _run(run_cli, config, tmp_path)
    assert code == 2 and message in err and "line 2" in err


def test_mixed_text_and_token_records_name_the_first_offending_line(basic_config, run_cli, tmp_path):
    lines = [json.dumps({"text": "some words " * 20}), "", json.dumps({"tokens": [1] * 20})]
    code, err = _run(run_cli, _data(basic_config, tmp_path, "d.jsonl", "\n".join(lines)), tmp_path)
    assert code == 2 and "line 3" in err and "has 'tokens' but the first record has 'text'" in err


def test_duplicate_sample_ids_are_refused(basic_config, run_cli, tmp_path):
    lines = [json.dumps({"id": "x", "tokens": [1] * 20})] * 2
    code, err = _run(run_cli, _data(basic_config, tmp_path, "d.jsonl", "\n".join(lines)), tmp_path)
    assert code == 2 and "the id 'x' is given to several records" in err


def test_negative_token_ids_in_npy_name_the_bad_id(basic_config, run_cli, tmp_path):
    import numpy as np

    np.save(tmp_path / "d.npy", np.array([[-5] + [1] * 19] * 3))
    config = basic_config(datasets=[{"name": "d", "path": str(tmp_path / "d.npy"), "seq_len": 16}])
    code, err = _run(run_cli, config, tmp_path)
    assert code == 2 and "token id -5" in err


def test_first_seen_step_on_a_flat_array_is_refused(basic_config, run_cli, tmp_path):
    import numpy as np

    np.save(tmp_path / "d.npy", np.ones((3, 20), dtype=np.int64))
    config = basic_config(datasets=[{"name": "d", "path": str(tmp_path / "d.npy"), "seq_len": 16,
                                     "first_seen_step": 5}])
    code, err = _run(run_cli, config, tmp_path)
    assert code == 2 and "'first_seen_step' applies to a (steps, batch, length) array" in err


def test_a_folder_without_a_step_is_refused_and_steps_fix_it(make_series, text_file, write_config, run_cli, tmp_path):
    root = make_series(steps=(1, 2))
    (root / "step-2").rename(root / "step-abc")
    config = {"series": [{"local": str(root)}], "datasets": [{"name": "d", "path": str(text_file), "max_samples": 4}]}
    code, err = _run(run_cli, write_config(config), tmp_path)
    assert code == 2 and "step-abc" in err and "carry no training step" in err and "steps:" in err
    config["series"][0]["steps"] = {"step-abc": 8}
    code, out, err = run_cli("run", write_config(config), "--json", tmp_path / "r.json")
    assert code == 0, err
    assert [c["step"] for c in json.loads((tmp_path / "r.json").read_text())["series"][0]["checkpoints"]] == [1, 8]


def test_two_folders_with_one_step_are_refused(make_series, text_file, write_config, run_cli, tmp_path):
    import shutil

    root = make_series(steps=(128, 256))
    shutil.copytree(root / "step-128", root / "checkpoint-128")
    config = write_config({"series": [{"local": str(root)}], "datasets": [{"name": "d", "path": str(text_file)}]})
    code, err = _run(run_cli, config, tmp_path)
    assert code == 2 and "checkpoint-128 and step-128 (step 128) have the same training step" in err


@pytest.mark.parametrize("check, message", [
    ({"metric": "memorization.M", "max": float("nan")}, "max: Input should be a finite number"),
    ({"metric": "memorization.M", "min": float("-inf")}, "finite number"),
    ({"metric": "memorization.M", "min": 0.9, "max": 0.1}, "min 0.9 is above max 0.1"),
    ({"metric": "memorization.M", "max": 1, "at": "step-999"}, "'at: step-999' is no checkpoint of series 'tiny'"),
    ({"metric": "memorization.M", "max": 1, "series": "tinny"}, "no series 'tinny' in the yaml. Did you mean 'tiny'?"),
])
def test_checks_that_could_never_fail_or_never_pass_are_refused(check, message, basic_config, run_cli, tmp_path):
    code, err = _run(run_cli, basic_config(checks=[check]), tmp_path)
    assert code == 2 and message in err


@pytest.mark.parametrize("rule, message", [
    ({"metric": "memorization.M", "dataset": "train", "max_increase": -0.1}, "greater than or equal to 0"),
    ({"metric": "memorization.MM", "dataset": "train", "max_increase": 0.1}, "no metric 'MM'"),
    ({"metric": "memorization.M", "dataset": "trian", "max_increase": 0.1}, "no data set 'trian'"),
])
def test_regression_rules_are_validated(rule, message, basic_config, run_cli, tmp_path):
    code, err = _run(run_cli, basic_config(regressions=[rule]), tmp_path)
    assert code == 2 and message in err


@pytest.mark.parametrize("target", ["config", "data", "ledger", "weights"])
def test_an_output_over_an_input_is_refused(target, basic_config, run_cli, text_file, tmp_path):
    config = basic_config()
    series = next((tmp_path / "series").glob("step-*"))
    (series.parent / "ledger.json").write_text("{}")
    path = {"config": config, "data": text_file, "ledger": series.parent / "ledger.json",
            "weights": series / "model.safetensors"}[target]
    before = path.read_bytes()
    code, out, err = run_cli("run", config, "--json", path)
    assert code == 2 and "an input of this run" in err and "Traceback" not in err
    assert path.read_bytes() == before


def test_two_outputs_on_one_path_are_refused(basic_config, run_cli, tmp_path):
    code, out, err = run_cli("run", basic_config(), "--json", tmp_path / "r.json", "--html", tmp_path / "r.json")
    assert code == 2 and "both write" in err


def test_non_utf8_yaml_is_a_configuration_error(write_config, run_cli, tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("series: caf\xe9\n".encode("latin-1"))
    code, err = _run(run_cli, path, tmp_path)
    assert code == 2 and "is not UTF-8 text" in err
    code, out, err = run_cli("lab", path)
    assert code == 2 and "is not UTF-8 text" in err and "Traceback" not in err


@pytest.mark.parametrize("what", ["binary", "folder", "json-list"])
def test_show_and_compare_on_something_that_is_not_a_report(what, basic_config, run_cli, tmp_path):
    path = tmp_path / "not-a-report"
    if what == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"\x89PNG\x00\xff" * 10 if what == "binary" else b"[1, 2]")
    code, out, err = run_cli("show", path)
    assert code == 2 and "Traceback" not in err and str(path) in err
    code, err = _run_args(run_cli, basic_config(), tmp_path, "--compare", path)
    assert code == 2 and str(path) in err


def test_a_report_of_another_schema_version_is_refused(basic_config, run_cli, tmp_path):
    assert run_cli("run", basic_config(), "-k", "memorization", "--json", tmp_path / "r.json")[0] == 0
    assert run_cli("show", tmp_path / "r.json")[0] == 0
    report = json.loads((tmp_path / "r.json").read_text())
    report["schema_version"] = 2
    (tmp_path / "newer.json").write_text(json.dumps(report))
    code, out, err = run_cli("show", tmp_path / "newer.json")
    assert code == 2 and "is a report of schema version 2; this memaudit reads version 1" in err
    report["a_field_of_version_2"] = 1  # the version is what is named, not the fields it does not know
    (tmp_path / "newer.json").write_text(json.dumps(report))
    code, out, err = run_cli("show", tmp_path / "newer.json")
    assert code == 2 and "is a report of schema version 2; this memaudit reads version 1" in err
    import memaudit
    from memaudit.errors import ConfigError

    with pytest.raises(ConfigError, match="is a report of schema version 2"):  # the Python API reads it so too
        memaudit.read_report(tmp_path / "newer.json")


@pytest.mark.parametrize("expr", ["memorization(series)", "memo and", "(memo", "or memo", "not"])
def test_malformed_keyword_expressions_are_usage_errors(expr, basic_config, run_cli, tmp_path):
    code, err = _run_args(run_cli, basic_config(), tmp_path, "-k", expr)
    assert code == 2 and f"-k '{expr}' is not a valid expression" in err


def test_select_errors_name_the_yaml_key(basic_config, run_cli, tmp_path):
    code, err = _run(run_cli, basic_config(select="memo and"), tmp_path)
    assert code == 2 and "the yaml's select: 'memo and' is not a valid expression" in err
    code, err = _run(run_cli, basic_config(select="nothing_like_this"), tmp_path)
    assert code == 5 and "the yaml's select: 'nothing_like_this'" in err


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not a memaudit training ledger"),
    ('{"series": "s"}', "is not a memaudit training ledger"),
    ("[]", "is not a memaudit training ledger"),
])
def test_a_bad_ledger_is_a_configuration_error(content, message, basic_config, run_cli, tmp_path):
    (tmp_path / "ledger.json").write_text(content)
    config = basic_config(series=[{"name": "tiny", "local": str(tmp_path / "series"),
                                   "ledger": str(tmp_path / "ledger.json")}])
    code, err = _run(run_cli, config, tmp_path)
    assert code == 2 and message in err


def test_a_checkpoint_without_tokenizer_files_is_unavailable(make_series, text_file, write_config, run_cli, tmp_path):
    root = make_series(steps=(1,))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (root / "step-1" / name).unlink()
    config = write_config({"series": [{"local": str(root)}], "datasets": [{"name": "d", "path": str(text_file)}]})
    code, err = _run(run_cli, config, tmp_path)
    assert code == 4 and "has no usable tokenizer" in err


def test_weights_under_another_architecture_make_the_checkpoint_an_error(make_series, text_file, write_config,
                                                                         run_cli, tmp_path):
    from transformers import LlamaConfig

    root = make_series(steps=(1, 2))
    LlamaConfig(vocab_size=400, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64).save_pretrained(root / "step-2")  # config.json of another model
    config = write_config({"series": [{"local": str(root)}],
                           "datasets": [{"name": "d", "path": str(text_file), "max_samples": 4}]})
    code, out, err = run_cli("run", config, "--json", tmp_path / "r.json")
    ckpts = json.loads((tmp_path / "r.json").read_text())["series"][0]["checkpoints"]
    assert code == 1 and ckpts[0]["error"] is None
    assert "WeightsMismatch" in ckpts[1]["error"] and "LlamaForCausalLM" in ckpts[1]["error"] and " missing (" in ckpts[1]["error"]
    assert not ckpts[1]["results"]


def test_a_series_probe_selected_alone_pulls_in_the_probe_it_reads(basic_config, run_cli, tmp_path):
    code, out, err = run_cli("run", basic_config(), "--json", tmp_path / "r.json", "-k", "memorization_series")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert {p["name"] for p in report["probes"]} == {"memorization", "memorization_series"}
    assert report["series"][0]["results"]["memorization_series"]["train"]["M"]


def test_a_probe_using_an_uncollected_probe_is_a_collection_error(basic_config, run_cli, tmp_path):
    (tmp_path / "p.py").write_text("from memaudit import series_probe\n"
                                   "@series_probe(uses=('memorisation',))\ndef s(checkpoints):\n    return {}\n")
    code, err = _run(run_cli, basic_config(probe_paths=[str(tmp_path / "p.py")]), tmp_path)
    assert code == 2 and "uses the results of probe 'memorisation'" in err and "Did you mean 'memorization'?" in err


def test_a_probe_file_that_exits_is_a_collection_error(basic_config, run_cli, tmp_path):
    (tmp_path / "p.py").write_text("import sys\nsys.exit(0)\n")
    code, err = _run(run_cli, basic_config(probe_paths=[str(tmp_path / "p.py")]), tmp_path)
    assert code == 2 and "SystemExit" in err


@pytest.mark.parametrize("canary, message", [
    ({"id": 5, "format": "x {secret}", "secret": "12", "alphabet": "0123456789", "length": 2}, "id: Input should be"),
    ({"id": "a", "format": "x {secret}", "secret": "12", "alphabet": "0012345", "length": 2}, "repeats a character"),
    ({"id": "a", "format": "x {secret}", "secret": "ab", "candidates": ["ab", "ab", "cd"]}, "repeat a string"),
    ({"id": "a", "format": "x {secret}", "secret": "12", "alphabet": "0123456789", "length": "2"}, "length"),
])
def test_canary_files_are_validated_strictly(canary, message, basic_config, run_cli, tmp_path):
    config = _data(basic_config, tmp_path, "c.jsonl", json.dumps(canary) + "\n", role="canary")
    code, err = _run(run_cli, config, tmp_path)
    assert code == 2 and message in err


def test_pytest_plugin_with_a_missing_yaml_is_exit_2(pytester):
    result = pytester.runpytest_subprocess("--memaudit", "missing.yaml", "-p", "no:cacheprovider")
    assert result.ret == 2


def test_a_probe_cannot_change_what_the_probes_after_it_see(basic_config, run_cli, tmp_path):
    (tmp_path / "p.py").write_text("from memaudit import probe\n@probe\ndef aaa_vandal(hits):\n"
                                   "    hits[:] = True\n    return {}\n")
    code, err = _run(run_cli, basic_config(probe_paths=[str(tmp_path / "p.py")]), tmp_path)
    assert code == 3 and "aaa_vandal" in err and "read-only" in err  # a bug in that probe, not a wrong M


def test_a_self_referential_yaml_is_a_configuration_error(write_config, run_cli, tmp_path):
    code, err = _run(run_cli, write_config("series: [{local: x}]\ndatasets: [{name: d, path: x}]\n"
                                           "probes: {memorization: &a {k: [*a]}}\n"), tmp_path)
    assert code == 2 and "refers to itself" in err


@pytest.mark.parametrize("params, message", [
    ({"schemes": [{"top_k": "40"}]}, "schemes[0][top_k] = '40'"),
    ({"schemes": [{"topk": 40}]}, "topk"),
    ({"schemes": [{"temperature": 0}]}, "greater than 0"),
    ({"pairs": [[32]]}, "pairs[0]"),
    ({"p": [1.5]}, "less than or equal to 1"),
])
def test_extraction_risk_parameters_are_validated(params, message, basic_config, run_cli, tmp_path):
    code, err = _run(run_cli, basic_config(probes={"extraction_risk": params}), tmp_path)
    assert code == 2 and message in err


@pytest.mark.parametrize("overrides, message", [
    ({"checks": [{"metric": "memorization.M", "max": True}]},
     "checks[0].max: Value error, expected a number, not a boolean"),
    ({"run": {"batch_size": 4, "shard_size": False}}, "run.shard_size: Value error, expected a number"),
    ({"datasets": [{"name": "d", "path": "d.txt", "role": "special", "seen_at_step": [3, True]}]},
     "seen_at_step: Value error, expected a number"),
])
def test_yaml_booleans_are_not_numbers(overrides, message, basic_config, run_cli, tmp_path):
    code, err = _run(run_cli, basic_config(**overrides), tmp_path)
    assert code == 2 and message in err


def test_yaml_yes_is_not_one_sample(basic_config, run_cli, tmp_path):
    config = basic_config()
    config.write_text(config.read_text().replace("max_samples: 12", "max_samples: yes"))
    code, err = _run(run_cli, config, tmp_path)
    assert code == 2 and "max_samples: Value error, expected a number, not a boolean (YAML reads yes/no" in err


@pytest.mark.parametrize("dataset, message", [
    ({"first_seen_step": -1}, "first_seen_step: Input should be greater than or equal to 0"),
    ({"first_seen_step": 0}, "'first_seen_step' applies to .npy and .bin and .idx data, not to"),
    ({"role": "special", "seen_at_step": [-3]}, "seen_at_step[0]: Input should be greater than or equal to 0"),
    ({"seen_at_step": [3]}, "'seen_at_step' gives the steps at which a special batch was trained on"),
    ({"first_seen_step": 2**63 - 10}, "first_seen_step: Input should be less than or equal to 9007199254740992"),
    ({"role": "special", "seen_at_step": [2**63]}, "seen_at_step[0]: Input should be less than or equal to"),
])
def test_training_steps_of_data_are_checked(dataset, message, basic_config, run_cli, text_file, tmp_path):
    code, err = _run(run_cli, basic_config(datasets=[{"name": "d", "path": str(text_file), **dataset}]), tmp_path)
    assert code == 2 and message in err


@pytest.mark.parametrize("series, probes, words", [
    (["tiny"], {"membership": {"members": "trian"}}, "members: 'trian' is no dataset of the yaml. Did you mean 'train'"),
    (["tiny"], {"membership": {"non_members": "train"}}, "name one data set twice"),
    (["tiny", "retrained"], {"unlearning": {"reference": "retrainedd"}},
     "reference: 'retrainedd' is no series of the yaml. Did you mean 'retrained'"),
    (["tiny"], {"unlearning": {"reference": "tiny"}}, "is the only series of the yaml"),
])
def test_parameters_naming_data_sets_or_series_are_checked_before_anything_loads(series, probes, words, write_config,
                                                                                  text_file, run_cli, tmp_path):
    """The series' folders do not exist: the reference is refused before any series is resolved."""
    config = write_config({"series": [{"name": n, "local": str(tmp_path / n)} for n in series],
                           "datasets": [{"name": "train", "path": str(text_file)}], "probes": probes})
    code, err = _run_args(run_cli, config, tmp_path)
    assert code == 2 and words in err


def test_one_data_set_per_unlearning_role_and_a_holdout_that_is_not_the_forget_set(basic_config, text_file, run_cli,
                                                                                   tmp_path):
    two = basic_config(datasets=[{"name": "a", "path": str(text_file), "role": "forget"},
                                 {"name": "b", "path": str(text_file), "role": "forget"}])
    code, err = _run_args(run_cli, two, tmp_path)
    assert code == 2 and "2 data sets have role 'forget' (a, b)" in err
    same = basic_config(datasets=[{"name": "f", "path": str(text_file), "role": "forget", "seq_len": 16},
                                  {"name": "h", "path": str(text_file), "role": "holdout", "seq_len": 16}])
    code, err = _run_args(run_cli, same, tmp_path)
    assert code == 2 and "hold the same tokens" in err


def test_text_files_read_as_people_write_them(basic_config, run_cli, tmp_path, corpus_text):
    """A UTF-8 byte-order mark, and JSON strings holding U+2028 (a line break for str.splitlines, not for JSONL)."""
    import json

    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + corpus_text[:3000].encode())
    records = tmp_path / "records.jsonl"
    records.write_bytes(b"\xef\xbb\xbf" + "\n".join(json.dumps({"text": corpus_text[i:i + 400] + "\u2028x"},
                                                               ensure_ascii=False) for i in range(0, 3000, 400)).encode())
    for path in (bom, records):
        config = basic_config(datasets=[{"name": "d", "path": str(path), "seq_len": 16, "max_samples": 4}])
        code, _, err = run_cli("run", config, "-k", "memorization")
        assert code == 0, err


def test_parquet_and_feather_suffixes_and_a_saved_datasets_folder(basic_config, run_cli, tmp_path, tokenizer):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    table = pa.table({"input_ids": [[i % len(tokenizer) for i in range(j, j + 20)] for j in range(6)]})
    pq.write_table(table, tmp_path / "d.pq")
    feather.write_feather(table, tmp_path / "d.feather")
    for name in ("d.pq", "d.feather"):
        config = basic_config(datasets=[{"name": "d", "path": str(tmp_path / name), "seq_len": 16}])
        code, _, err = run_cli("run", config, "-k", "memorization")
        assert code == 0, err
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "data-00000-of-00001.arrow").write_bytes(b"")
    code, err = _run(run_cli, basic_config(datasets=[{"name": "d", "path": str(saved)}]), tmp_path)
    assert code == 2 and "is a folder" in err and "data-00000-of-00001.arrow" in err


@pytest.mark.parametrize("check, words", [
    ({"metric": "memorization_series.T_step@0.7", "max": 10}, "does not compute 'T_step@0.7' with its parameters"),
    ({"metric": "extraction_risk.rate[T=0.5][k=32,m=32][n=1,p=0.5]", "max": 0.1},
     "It computes: schemes, greedy_rate[k=32,m=32]"),
    ({"metric": "extraction_risk_series.first_step[rate[T=1.0][k=8,m=8][n=1,p=0.5]]", "min": 0},
     "Did you mean 'first_step[rate[T=1.0][k=32,m=32][n=1,p=0.5]]'"),
    ({"metric": "membership.auc_loss", "dataset": "train", "max": 0.9}, "its metrics are under 'dataset: all'"),
])
def test_checks_on_names_the_run_cannot_compute_are_refused_before_anything_loads(check, words, write_config,
                                                                                  text_file, run_cli, tmp_path):
    config = write_config({"series": [{"name": "s", "local": str(tmp_path / "none")}],
                           "datasets": [{"name": "train", "path": str(text_file)}], "checks": [check]})
    code, err = _run_args(run_cli, config, tmp_path)
    assert code == 2 and words in err


def test_membership_metrics_can_be_gated(basic_config, text_file, run_cli, tmp_path):
    valid = tmp_path / "valid.txt"
    valid.write_text(text_file.read_text()[3000:], encoding="utf-8")
    config = basic_config(datasets=[{"name": "train", "path": str(text_file), "seq_len": 16, "max_samples": 8},
                                    {"name": "valid", "path": str(valid), "role": "valid", "seq_len": 16,
                                     "max_samples": 8}],
                          checks=[{"metric": "membership.auc_loss", "max": 1.0},
                                  {"metric": "membership.auc_zlib", "dataset": "all", "min": 0.0}])
    code, out, err = run_cli("run", config, "-k", "membership", "--json", tmp_path / "r.json")
    checks = json.loads((tmp_path / "r.json").read_text())["checks"]
    assert code == 0, err
    assert [c["dataset"] for c in checks] == ["all", "all"] and all(c["value"] is not None for c in checks)


def test_quoted_numbers_are_refused_in_the_yaml_as_in_probe_parameters(basic_config, text_file, run_cli, tmp_path):
    """One rule for every value a user gives: `seq_len: "32"` is text, as `k: "32"` is for a probe."""
    config = basic_config(datasets=[{"name": "d", "path": str(text_file), "seq_len": "32"}])
    code, err = _run(run_cli, config, tmp_path)
    assert code == 2 and "seq_len: Value error, expected a number, not text (write it without quotes)" in err


def test_an_unwritable_cache_is_found_before_any_checkpoint_is_scored(basic_config, run_cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    config = basic_config(run={"batch_size": 4, "cache_dir": str(blocker / "cache")})
    code, err = _run_args(run_cli, config, tmp_path, "-k", "memorization")
    assert code == 2 and "run with --no-cache" in err and "Not a directory" in err
    assert run_cli("run", config, "-k", "memorization", "--no-cache")[0] == 0


def test_a_data_set_name_with_an_at_sign_reaches_the_series_probes(basic_config, text_file, run_cli, tmp_path):
    config = basic_config(datasets=[{"name": "train@v2", "path": str(text_file), "seq_len": 16, "max_samples": 4}])
    code, _, err = run_cli("run", config, "-k", "memorization", "--json", tmp_path / "r.json")
    series = json.loads((tmp_path / "r.json").read_text())["series"][0]
    assert code == 0, err
    assert list(series["results"]["memorization_series"]) == ["train@v2"]


@pytest.mark.parametrize("records, words", [
    ([{"tokens": [1] * 20, "dup": 1}, {"tokens": [2] * 20}], "record 2 of .* has no field 'dup' \\(group_by\\)"),
    ([{"tokens": [1] * 20, "dup": 1}, {"tokens": [2] * 20, "dup": "one"}], "is text, but the first sample's is number"),
])
def test_group_by_fields_are_checked(records, words, basic_config, run_cli, tmp_path):
    import re

    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, err = _run(run_cli, basic_config(datasets=[{"name": "d", "path": str(path), "seq_len": 16,
                                                      "group_by": "dup"}]), tmp_path)
    assert code == 2 and re.search(words, err), err
    text = basic_config(datasets=[{"name": "t", "path": str(tmp_path / "d.jsonl").replace("d.jsonl", "t.txt"),
                                   "group_by": "dup"}])
    (tmp_path / "t.txt").write_text("some text " * 100)
    code, err = _run(run_cli, text, tmp_path)
    assert code == 2 and "group_by reads a per-sample field" in err
