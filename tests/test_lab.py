"""memaudit/lab: a few-second training run, its ledger, determinism, interventions, resume, bad input."""

import json
from collections import Counter

import pytest

from memaudit.errors import ConfigError
from memaudit.inputs.ledger import read_ledger
from memaudit.lab.config import parse_lab_config
from memaudit.lab.train import plan_updates, run_lab

LAB = {
    "vocab_size": 300, "seq_len": 16, "n_samples": 12, "n_valid": 4, "n_special": 4, "batch_size": 4,
    "epochs": 3, "lr": 0.01, "save_every": 1,
    "runs": [{"name": "base", "layers": 1, "width": 16, "heads": 2, "special": {"epoch": 2, "repeats": 2}},
             {"name": "ids", "layers": 1, "width": 16, "heads": 2, "ids": "prefix"},
             {"name": "control", "layers": 1, "width": 16, "heads": 2, "ids": "control"}],
}


def lab_config(tmp_path, out="lab", **overrides):
    return parse_lab_config({**LAB, "out": str(tmp_path / out), **overrides}, tmp_path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("lab")
    return run_lab(lab_config(base))


def test_ledger_sees_each_sample_once_per_epoch_and_the_special_batch_at_its_steps(trained):
    ledger = read_ledger(trained / "base" / "ledger.json")
    train_updates = [u for u in ledger.updates if u.kind == "train"]
    for epoch in (1, 2, 3):
        seen = Counter(s for u in train_updates if u.epoch == epoch for s in u.sample_ids)
        assert sorted(seen) == sorted(f"train:{i}" for i in range(12)) and set(seen.values()) == {1}
    special = [u.step for u in ledger.updates if u.kind == "special"]
    assert special == [4, 5]  # start of epoch 2, after epoch 1's 3 updates, twice in a row
    assert ledger.interventions[0].kind == "special_batch" and ledger.interventions[0].steps == special
    assert ledger.epoch_end_steps == [3, 8, 11] and ledger.steps_per_epoch == 3
    steps = sorted(int(p.name.split("-")[1]) for p in (trained / "base").glob("step-*"))
    assert steps == [0, 3, 5, 8, 11]  # init, every epoch end, right after the special batch


def test_same_config_and_seed_give_bit_identical_checkpoints(trained, tmp_path):
    again = run_lab(lab_config(tmp_path, runs=LAB["runs"][:1]))
    for step in (3, 5, 11):
        a = (trained / "base" / f"step-{step}" / "model.safetensors").read_bytes()
        b = (again / "base" / f"step-{step}" / "model.safetensors").read_bytes()
        assert a == b


def test_unique_ids_and_vocabulary_growth_are_saved(trained):
    from transformers import AutoTokenizer

    base = AutoTokenizer.from_pretrained(trained / "base" / "step-0")
    ids = AutoTokenizer.from_pretrained(trained / "ids" / "step-0")
    control = AutoTokenizer.from_pretrained(trained / "control" / "step-0")
    assert len(ids) == len(control) == len(base) + 12
    config = json.loads((trained / "ids" / "step-0" / "config.json").read_text())
    assert config["vocab_size"] == len(ids)
    id_token = ids.convert_tokens_to_ids("<id_5>")
    rows = [json.loads(line) for line in (trained / "ids" / "data" / "train.jsonl").read_text().splitlines()]
    assert rows[5]["tokens"][0] == id_token and len(rows[5]["tokens"]) == 16
    control_rows = [json.loads(line) for line in (trained / "control" / "data" / "train.jsonl").read_text().splitlines()]
    assert all(t < len(base) for r in control_rows for t in r["tokens"])  # the new tokens are never used
    kinds = [i.kind for i in read_ledger(trained / "ids" / "ledger.json").interventions]
    assert kinds == ["unique_ids"]


def test_audit_of_the_lab_output_reads_the_ledger(trained, run_cli, tmp_path):
    code, out, err = run_cli("run", trained / "checkpoints.yaml", "--json", tmp_path / "r.json")
    assert code in (0, 1), err
    report = json.loads((tmp_path / "r.json").read_text())
    base = next(s for s in report["series"] if s["name"] == "base")
    assert base["steps_per_epoch"] == 3 and base["n_params"]
    row = base["results"]["memorization_series"]["train"]
    assert row["steps"] == [0, 3, 5, 8, 11]
    ckpt = base["checkpoints"][1]
    assert ckpt["results"]["memorization"]["train"]["M_update"] is not None  # batch of update 3
    assert "T_update@0.5" in row
    first_epoch = {s: read_ledger(trained / "base" / "ledger.json").epoch_at(s) for s in row["steps"]}
    assert first_epoch == {0: 0.0, 3: 1.0, 5: 1.4, 8: 2.0, 11: 3.0}
    assert {d["name"] for d in report["datasets"]} >= {"train", "valid", "special"}
    by_name = {s["name"]: s for s in report["series"]}
    ids_row = by_name["ids"]["results"]["unique_ids_series"]["train"]
    assert ids_row["run_kind"] == "ids" and ids_row["baseline"] == "base" and "gain_M_mean" in ids_row
    assert by_name["control"]["results"]["unique_ids_series"]["train"]["run_kind"] == "control"
    assert by_name["ids"]["lab_run"]["ids"] == "prefix"


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import memaudit.lab.train as train

    lab = lab_config(tmp_path, runs=LAB["runs"][:1])
    real_save = train._save
    calls = []

    def crash_after_second_save(folder, step, *args):
        real_save(folder, step, *args)
        calls.append(step)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "_save", crash_after_second_save)
    with pytest.raises(KeyboardInterrupt):
        run_lab(lab)
    assert not (lab.out / "base" / "ledger.json").exists()
    monkeypatch.setattr(train, "_save", real_save)
    run_lab(lab)
    fresh = run_lab(lab_config(tmp_path, out="fresh", runs=LAB["runs"][:1]))
    for step in (8, 11):
        assert (lab.out / "base" / f"step-{step}" / "model.safetensors").read_bytes() == \
            (fresh / "base" / f"step-{step}" / "model.safetensors").read_bytes()


def test_spaced_repetition_plan(tmp_path):
    lab = parse_lab_config({**LAB, "runs": [{"name": "r", "layers": 1, "width": 16,
                                             "special": {"epoch": 1, "repeats": 2, "spacing": 2}}]}, tmp_path)
    updates, _, save = plan_updates(lab, lab.runs[0])
    assert [(u.step, u.epoch) for u in updates if u.kind == "special"] == [(1, 1), (8, 3)]  # 1 + 3 + 3 updates before epoch 3
    assert {1, 8} <= save


def test_a_different_series_in_the_output_folder_is_refused(trained):
    other = parse_lab_config({**LAB, "seed": 1, "out": str(trained)}, None)
    with pytest.raises(ConfigError, match="different lab series"):
        run_lab(other)


def test_too_large_sizes_are_refused_with_the_estimate(tmp_path):
    lab = lab_config(tmp_path, runs=[{"name": "huge", "layers": 48, "width": 16384, "heads": 16}])
    with pytest.raises(ConfigError, match=r"huge.*parameters.*GiB"):
        run_lab(lab)


def test_too_small_corpus_is_refused(tmp_path):
    (tmp_path / "tiny.txt").write_text("a small corpus " * 50)
    with pytest.raises(ConfigError, match="asks for"):
        run_lab(lab_config(tmp_path, corpus=str(tmp_path / "tiny.txt")))


def test_lab_cli_and_unknown_key(tmp_path, run_cli, write_config):
    code, _, err = run_cli("lab", write_config({"lab": {**LAB, "epoch": 3}}, name="lab.yaml"))
    assert code == 2 and "unknown key 'epoch'" in err and "Did you mean 'epochs'?" in err


def test_a_yaml_boolean_is_no_number_in_the_lab(tmp_path, run_cli, write_config):
    code, _, err = run_cli("lab", write_config({"lab": {**LAB, "epochs": True}}, name="lab.yaml"))
    assert code == 2 and "epochs: Value error, expected a number, not a boolean" in err


def test_a_failed_lab_leaves_nothing_that_blocks_the_corrected_run(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        run_lab(lab_config(tmp_path, corpus=str(tmp_path / "no-such-corpus.txt")))
    assert not (tmp_path / "lab" / "lab.json").exists()
    from memaudit.lab.train import _check_output

    assert _check_output(tmp_path / "lab", lab_config(tmp_path), overwrite=False) is False  # not "a different lab"


def test_a_lab_keeps_its_fingerprint_across_versions(tmp_path):
    """The demo trained by memaudit before seeds, forget sets and multi-update exposures existed must resume,
    not be refused as another lab: settings added later count only when set. Change the pinned value only
    when the same yaml would now train other weights."""
    from memaudit.lab.demo import demo_lab_config

    assert demo_lab_config(tmp_path / "demo").fingerprint() == "737b9f5d5e3de0ae"
    with_seeds = parse_lab_config({**LAB, "seeds": [0]}, tmp_path)
    assert with_seeds.fingerprint() != parse_lab_config(LAB, tmp_path).fingerprint()


def test_training_says_a_line_per_run_when_stderr_is_no_terminal(tmp_path):
    """CI logs and notebooks do not sit silent: without a terminal, a line per trained run."""
    import io

    from rich.console import Console

    out = io.StringIO()
    lab = parse_lab_config({"vocab_size": 300, "seq_len": 16, "n_samples": 8, "n_valid": 0, "n_special": 0,
                            "batch_size": 4, "epochs": 1, "runs": [{"name": "a", "layers": 1, "width": 16},
                                                                   {"name": "b", "layers": 1, "width": 16}],
                            "out": str(tmp_path / "lab")}, tmp_path)
    run_lab(lab, console=Console(file=out, force_terminal=False))
    lines = [line for line in out.getvalue().splitlines() if line.startswith("memaudit lab: trained")]
    assert len(lines) == 2 and "2 updates" in lines[0]


def test_a_perturbed_run_sees_each_inserted_sample_as_often_as_its_level(tmp_path):
    """Hubble in miniature: the perturbed run's ledger trains on perturbation sample i exactly level_i times,
    within its phase; the standard twin never does; the audit yaml pairs them and groups the set by level."""
    import yaml

    from memaudit.lab.train import perturb_levels

    lab = parse_lab_config({"vocab_size": 300, "seq_len": 16, "n_samples": 32, "n_valid": 8, "n_special": 0,
                            "n_perturb": 10, "dup_levels": [0, 1, 4], "batch_size": 4, "epochs": 2,
                            "runs": [{"name": "standard", "layers": 1, "width": 16},
                                     {"name": "late", "layers": 1, "width": 16, "insert": {"phase": [0.5, 1.0]},
                                      "reference": "standard", "n_train": 16}],
                            "out": str(tmp_path / "lab")}, tmp_path)
    out = run_lab(lab)
    levels = perturb_levels(lab)
    late = read_ledger(out / "late" / "ledger.json")
    seen = Counter(s for u in late.updates for s in u.sample_ids if s.startswith("perturb:"))
    assert all(seen[f"perturb:{i}"] == level for i, level in enumerate(levels))
    train_steps = [u.step for u in late.updates if u.kind == "train"]
    first = min(u.step for u in late.updates if any(s.startswith("perturb:") for s in u.sample_ids))
    assert first > train_steps[len(train_steps) // 2 - 1]  # the second half of training only
    assert {s for u in late.updates for s in u.sample_ids if s.startswith("train:")} == {f"train:{i}" for i in range(16)}
    standard = read_ledger(out / "standard" / "ledger.json")
    assert not any(s.startswith("perturb:") for u in standard.updates for s in u.sample_ids)
    config = yaml.safe_load((out / "checkpoints.yaml").read_text())
    assert {"name": "late", "local": "late", "reference": "standard"} in config["series"]
    assert any(d.get("group_by") == "dup" for d in config["datasets"]) and "twin" in config["probes"]


@pytest.mark.parametrize("change, words", [
    ({"runs": [{"name": "p", "layers": 1, "width": 16, "insert": {"phase": [0.5, 0.2]}}], "n_perturb": 9},
     "must be \\[start, end\\]"),
    ({"runs": [{"name": "p", "layers": 1, "width": 16, "insert": {}}]}, "set n_perturb to at least one sample"),
    ({"runs": [{"name": "p", "layers": 1, "width": 16, "reference": "q"}]}, "must name another run"),
])
def test_bad_insertions_are_refused(tmp_path, change, words):
    base = {"vocab_size": 300, "seq_len": 16, "n_samples": 32, "n_valid": 8, "n_special": 0, "batch_size": 4,
            "epochs": 1, "out": str(tmp_path / "lab")}
    with pytest.raises(ConfigError, match=words):
        parse_lab_config({**base, **change}, tmp_path)
