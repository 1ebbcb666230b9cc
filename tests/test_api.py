"""The Python API: `audit()` is `memaudit run`, `audit_model()` is the audit of the same weights on disk."""

import json

import numpy as np
import pytest
from conftest import tiny_model

import memaudit
from memaudit.errors import ConfigError, ExitCode, NothingCollected

VOLATILE = {"load_s", "wait_s", "forward_s", "provenance"}  # timings, times and the command line


def _normalised(value):
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    return value


def test_audit_gives_the_report_of_the_command_line(small_lab, tmp_path, run_cli):
    config = small_lab / "checkpoints.yaml"
    code, _, err = run_cli("run", config, "--no-cache", "--json", tmp_path / "cli.json")
    report = memaudit.audit(config, cache=False)
    assert isinstance(report, memaudit.AuditReport)
    assert report.exit_code == code and report.status in ("passed", "failed"), err
    cli = json.loads((tmp_path / "cli.json").read_text())
    assert _normalised(json.loads(report.model_dump_json())) == _normalised(cli)
    assert report.provenance.command == "memaudit.audit()"
    assert sum(len(s.checkpoints) for s in report.series) >= 6 and len(report.probes) >= 12


def test_audit_takes_a_dict_and_the_command_line_options(basic_config, tmp_path, monkeypatch):
    import yaml

    raw = yaml.safe_load(basic_config().read_text())
    monkeypatch.chdir(tmp_path)
    report = memaudit.audit(raw, probes=["memorization"], batch_size=2)
    assert [p.name for p in report.probes] == ["memorization"]
    assert report.provenance.batch_size == 2 and report.provenance.config_path is None
    again = memaudit.audit(raw, probes=["memorization"], batch_size=2)  # the journal, as for `memaudit run`
    assert all(c.from_journal for s in again.series for c in s.checkpoints)
    assert again.provenance.config_hash == report.provenance.config_hash


@pytest.mark.parametrize("kwargs, error, words", [
    ({"batch_size": 0}, ConfigError, "batch_size=0"),
    ({"probes": ["memorisation"]}, ConfigError, "Did you mean 'memorization'"),
    ({"select": "nothing_matches"}, NothingCollected, "No probe was selected"),
    ({"compare": "missing.json"}, ConfigError, "No report at"),
])
def test_bad_arguments_raise_the_command_line_error(basic_config, kwargs, error, words):
    with pytest.raises(error, match=words) as caught:
        memaudit.audit(basic_config(), **kwargs)
    assert caught.value.exit_code in (ExitCode.USAGE_ERROR, ExitCode.NO_PROBES)


def test_audit_model_equals_the_audit_of_the_same_weights_on_disk(tmp_path, tokenizer, text_file, run_cli):
    model = tiny_model("gpt_neox", len(tokenizer), seed=3).train()  # as a training loop leaves it
    folder = tmp_path / "series" / "step-40"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    datasets = {"train": {"path": str(text_file), "seq_len": 32, "max_samples": 10}}
    config = {"series": [{"name": "s", "local": str(folder.parent)}],
              "datasets": [{"name": "train", "path": str(text_file), "seq_len": 32, "max_samples": 10}]}
    on_disk = memaudit.audit(config, cache=False).series[0].checkpoints[0]
    in_memory = memaudit.audit_model(model, tokenizer, datasets, step=40)
    assert model.training  # put back in the mode it was in
    assert in_memory.results == on_disk.results and in_memory.results["memorization"]["train"]["loss"] > 0
    assert (in_memory.step, in_memory.n_tokens, in_memory.error) == (40, on_disk.n_tokens, None)
    assert in_memory.location == "memory:GPTNeoXForCausalLM" and in_memory.n_params == on_disk.n_params


def test_a_head_swapped_between_two_audits_is_used(tokenizer, text_file):
    """Nothing is kept on the user's model: after its output head is replaced (or the model audited again
    with new head weights), the audit uses the new head, as a fresh model with that head does."""
    import torch

    model = tiny_model("gpt_neox", len(tokenizer), seed=3)
    datasets = {"train": {"path": str(text_file), "seq_len": 32, "max_samples": 6}}
    before = memaudit.audit_model(model, tokenizer, datasets, probes=["memorization"])
    torch.manual_seed(9)
    new_head = torch.nn.Linear(model.config.hidden_size, len(tokenizer), bias=False)
    model.set_output_embeddings(new_head)
    after = memaudit.audit_model(model, tokenizer, datasets, probes=["memorization"])
    fresh = tiny_model("gpt_neox", len(tokenizer), seed=3)
    fresh.set_output_embeddings(new_head)
    expected = memaudit.audit_model(fresh, tokenizer, datasets, probes=["memorization"])
    assert after.results == expected.results and after.results != before.results


def test_audit_takes_probe_parameters_like_audit_model(basic_config):
    config = basic_config(select="memorization")
    report = memaudit.audit(config, cache=False, params={"memorization": {"k": 4, "m": 4}})
    assert next(p for p in report.probes if p.name == "memorization").params["k"] == 4
    with pytest.raises(ConfigError, match="has no parameter 'kk'"):
        memaudit.audit(config, params={"memorization": {"kk": 4}})


def test_the_products_in_memory_are_those_on_disk(tmp_path, tokenizer, text_file):
    """The forward products themselves (not only the metrics): per-sample M and losses, bit for bit."""
    model = tiny_model("gpt2", len(tokenizer), seed=4)
    folder = tmp_path / "s" / "step-1"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    data = {"train": {"path": str(text_file), "seq_len": 24, "max_samples": 6}}
    params = {"memorization": {"per_sample": True}, "membership": {"per_sample": True}}
    live = memaudit.audit_model(model, tokenizer, data, probes=["memorization"], params=params)
    disk = memaudit.audit({"series": [{"local": str(folder.parent)}],
                           "datasets": [{"name": "train", "path": str(text_file), "seq_len": 24, "max_samples": 6}],
                           "probes": params}, probes=["memorization"], cache=False)
    assert live.results["memorization"]["train"]["samples"] == disk.series[0].checkpoints[0].results[
        "memorization"]["train"]["samples"]


def test_datasets_in_memory_are_validated_as_files_are(tokenizer, corpus_text):
    model = tiny_model("gpt_neox", len(tokenizer), seed=0)
    texts = [corpus_text[i:i + 400] for i in range(0, 4000, 400)]
    result = memaudit.audit_model(model, tokenizer, {"train": texts, "valid": {"data": texts[:4], "role": "valid"}},
                                  probes=["memorization"])
    assert set(result.results["memorization"]) == {"train", "valid"}
    tokens = np.random.default_rng(0).integers(0, len(tokenizer), size=(5, 20))
    by_array = memaudit.audit_model(model, tokenizer, {"t": {"data": tokens, "seq_len": 20}}, params={"memorization": {"k": 4, "m": 4}},
                                    probes=["memorization"])
    by_lists = memaudit.audit_model(model, tokenizer, {"t": {"data": [list(map(int, r)) for r in tokens], "seq_len": 20}},
                                    params={"memorization": {"k": 4, "m": 4}}, probes=["memorization"])
    assert by_array.results == by_lists.results and by_array.results["memorization"]["t"]["n_samples"] == 5
    for bad, words in [({"t": []}, "is empty"), ({"t": [[1, 2.5, 3]]}, "token ids must be integers"),
                       ({"t": [{"txt": "a"}]}, "either a 'text' or a 'tokens'"), ({"t": 7}, "got int"),
                       ({"t": [[len(tokenizer) + 5] * 70]}, "another tokenizer"), ("train.txt", "got str"),
                       ({"t": {"data": texts, "rol": "valid"}}, "Did you mean 'role'")]:
        with pytest.raises(ConfigError, match=words):
            memaudit.audit_model(model, tokenizer, bad, probes=["memorization"])
    with pytest.raises(ConfigError, match="needs its tokenizer"):
        memaudit.audit_model(model, None, {"train": texts})
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        memaudit.audit_model("gpt2", tokenizer, {"train": texts})


def test_a_model_smaller_than_its_tokenizer_or_on_the_meta_device_is_refused(tokenizer, corpus_text):
    """Token ids the model has no embedding for (a tokenizer that grew) are refused before the automatic batch
    size runs a probing forward pass; weights on the meta device have no values to audit."""
    import torch

    texts = [corpus_text[i:i + 400] for i in range(0, 4000, 400)]
    small = tiny_model("gpt_neox", len(tokenizer) - 100, seed=0)  # the data holds ids up to len(tokenizer) - 1
    with pytest.raises(ConfigError, match="the model's vocabulary has"):
        memaudit.audit_model(small, tokenizer, {"train": texts}, probes=["memorization"])
    with torch.device("meta"):
        meta = tiny_model("gpt_neox", len(tokenizer), seed=0)
    with pytest.raises(ConfigError, match="meta device"):
        memaudit.audit_model(meta, tokenizer, {"train": texts}, probes=["memorization"])


def test_a_live_series_runs_series_probes_and_checks(tokenizer, corpus_text):
    texts = [corpus_text[i:i + 300] for i in range(0, 3000, 300)]
    checks = [{"metric": "memorization.M", "at": "max", "max": 0.0}]
    live = memaudit.api.LiveSeries(tokenizer, {"train": texts}, probes=["memorization", "memorization_series"],
                                   checks=checks, name="run")
    for step, seed in ((10, 0), (20, 1)):
        live.add(tiny_model("gpt_neox", len(tokenizer), seed=seed), step=step)
    report = live.report()
    series = report.series[0]
    assert [c.step for c in series.checkpoints] == [10, 20]
    assert series.results["memorization_series"]["train"]["steps"] == [10, 20]
    assert report.status == "failed" and report.exit_code == ExitCode.CHECKS_FAILED
    live.add(tiny_model("gpt_neox", len(tokenizer), seed=2), step=30)
    assert len(report.series[0].checkpoints) == 2  # a report is a snapshot
    with pytest.raises(ConfigError, match="must increase"):
        live.add(tiny_model("gpt_neox", len(tokenizer), seed=2), step=30)
    with pytest.raises(ConfigError, match="at: step-10"):
        memaudit.api.LiveSeries(tokenizer, {"train": texts}, checks=[{"metric": "memorization.M", "at": "step-10",
                                                                      "max": 1}])


def test_nan_weights_give_a_result_with_an_error(tokenizer, corpus_text):
    import torch

    model = tiny_model("gpt_neox", len(tokenizer), seed=0)
    with torch.no_grad():
        model.get_output_embeddings().weight.fill_(float("nan"))
    result = memaudit.audit_model(model, tokenizer, {"train": [corpus_text[:2000]]}, probes=["memorization"])
    assert result.error.startswith("NonFiniteLogits")


@pytest.mark.parametrize("kwargs, words", [
    ({"cache": "false"}, "cache='false': Input should be a valid boolean"),
    ({"probes": "memorization"}, "probes='memorization': Input should be a valid list"),
    ({"batch_size": True}, "batch_size=True"),
    ({"tolerance": float("nan")}, "tolerance"),
    ({"compare": {"status": "passed"}}, "compare must be the path"),
])
def test_the_api_checks_its_arguments_strictly(basic_config, kwargs, words):
    with pytest.raises(ConfigError, match=words):
        memaudit.audit(basic_config(), **kwargs)


def test_live_arguments_are_checked(tokenizer, corpus_text):
    model = tiny_model("gpt_neox", len(tokenizer), seed=0)
    texts = [corpus_text[:3000]]
    live = memaudit.LiveSeries(tokenizer, {"train": texts}, probes=["memorization"])
    for kwargs, words in [({"step": True}, "step=True"), ({"step": -1}, "step=-1"), ({"step": "5"}, "step='5'")]:
        with pytest.raises(ConfigError, match=words):
            live.add(model, **kwargs)
    assert live.add(model, step=np.int64(5)).step == 5  # numpy integers are steps
    with pytest.raises(ConfigError, match="not both"):
        memaudit.audit_model(model, tokenizer, {"train": {"data": texts, "path": "train.txt"}})
    with pytest.raises(ConfigError, match="params"):
        memaudit.audit_model(model, tokenizer, {"train": texts}, params=["memorization"])


@pytest.mark.parametrize("datasets, words", [
    ({"t": None}, "records are None"), ({"t": {"role": "valid"}}, "path is required"), ({}, "at least 1 item"),
    (["a.txt"], "give a dict of name"), ({"t": [b"abc"]}, "either a 'text' or a 'tokens'"),
    ({"t": [[[1, 2]]]}, "token ids must be integers"), ({"t": [[True] * 70]}, "a boolean"),
    ({"t": [[2**70] * 70]}, "which is no token id"), ({"t": np.zeros((2, 70))}, "float64 array"),
    ({"t": {"data": ["some text " * 40], "first_sample": 3}}, "'first_sample' applies to .npy"),
    ({"t": {"data": [[1] * 70], "first_seen_step": 3}}, "'first_seen_step' applies to .npy and .bin and .idx data, "
                                                       "not to records given in memory"),
    ({"t": {"data": np.ones((2, 70), dtype=np.int64), "sequences_per_step": 2}}, "'sequences_per_step' applies"),
    ({"t": {"data": ["my pin is 1234"] * 3, "role": "canary"}}, "a canary data set is read from a canary file"),
])
def test_adversarial_data_in_memory_is_refused_with_a_message(tokenizer, datasets, words):
    model = tiny_model("gpt_neox", len(tokenizer), seed=0)
    with pytest.raises(ConfigError, match=words):
        memaudit.audit_model(model, tokenizer, datasets, probes=["memorization"])


def test_a_tokenizer_that_is_not_one_and_a_bad_select_are_named(tokenizer, corpus_text):
    model = tiny_model("gpt_neox", len(tokenizer), seed=0)
    with pytest.raises(ConfigError, match="not str"):
        memaudit.audit_model(model, "gpt2", {"t": [corpus_text[:3000]]})
    with pytest.raises(ConfigError, match="^select '\\(memorization' is not a valid expression"):
        memaudit.audit_model(model, tokenizer, {"t": [corpus_text[:3000]]}, select="(memorization")
