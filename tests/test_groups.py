"""group_by: a data set's metrics split by a per-sample field (Hubble's duplicate count), in every output."""

import json

import numpy as np
import pytest


@pytest.fixture
def grouped(make_series, tokenizer, write_config, tmp_path):
    """24 samples of 20 tokens, a `dup` field of 0, 1, 4 and 16 (numeric order differs from text order)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "inserted.jsonl"
    dups = [16, 4, 1, 0] * 6
    path.write_text("".join(json.dumps({"id": f"p{i}", "tokens": rng.integers(0, len(tokenizer), 20).tolist(),
                                        "dup": d}) + "\n" for i, d in enumerate(dups)))
    config = write_config({"series": [{"name": "s", "local": str(make_series(steps=(1, 2)))}],
                           "datasets": [{"name": "inserted", "path": str(path), "seq_len": 20, "group_by": "dup"}],
                           "probes": {"memorization": {"k": 4, "m": 4}},
                           "checks": [{"metric": "memorization.M", "dataset": "inserted[dup=16]", "max": 1.0}],
                           "run": {"batch_size": 4}})
    return config, dups


def test_groups_split_every_checkpoint_probe_and_sum_back(grouped, run_cli, tmp_path):
    config, dups = grouped
    code, out, err = run_cli("run", config, "-k", "memorization", "--json", tmp_path / "r.json",
                             "--samples-out", tmp_path / "rows")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    names = [d["name"] for d in report["datasets"]]
    assert names == ["inserted", "inserted[dup=0]", "inserted[dup=1]", "inserted[dup=4]", "inserted[dup=16]"]
    # a group's field and value travel as data (typed), its name is only its key; a yaml data set has none
    assert "group" not in report["datasets"][0]
    assert [(d["group_of"], d["group"]) for d in report["datasets"][1:]] == \
        [("inserted", {"field": "dup", "value": v}) for v in (0, 1, 4, 16)]
    assert all(type(d["group"]["value"]) is int for d in report["datasets"][1:])
    for c in report["series"][0]["checkpoints"]:
        r = c["results"]["memorization"]
        whole = r["inserted"]
        groups = [r[f"inserted[dup={d}]"] for d in (0, 1, 4, 16)]
        assert sum(g["n_samples"] for g in groups) == whole["n_samples"] == 24
        assert sum(g["M"] * g["n_samples"] for g in groups) / 24 == pytest.approx(whole["M"], abs=1e-12)
        assert sum(g["loss"] * g["n_samples"] for g in groups) / 24 == pytest.approx(whole["loss"], abs=1e-12)
    [check] = report["checks"]
    assert check["dataset"] == "inserted[dup=16]" and check["value"] is not None
    assert "inserted[dup=16]" in out
    pd = pytest.importorskip("pandas")
    rows = pd.read_parquet(tmp_path / "rows")
    assert sorted(rows.data_dup.unique()) == [0, 1, 4, 16] and len(rows) == 48
    frame = memaudit_frame(tmp_path / "r.json")
    assert {"inserted[dup=0]", "inserted[dup=16]"} <= set(frame.dataset)


def memaudit_frame(path):
    import memaudit

    return memaudit.read_report(path).to_frame()


def test_a_check_on_a_group_of_a_field_that_is_not_grouped_is_refused(grouped, run_cli, write_config, tmp_path):
    import yaml

    config, _ = grouped
    raw = yaml.safe_load(config.read_text())
    raw["checks"][0]["dataset"] = "inserted[domain=web]"
    path = write_config(raw, name="bad.yaml")
    code, _, err = run_cli("run", path)
    assert code == 2 and "no data set 'inserted[domain=web]'" in err


@pytest.fixture
def pair(make_series, tokenizer, write_config, tmp_path, text_file):
    """A 'perturbed' series and its 'standard' twin (other weights, same steps and tokenizer), inserted samples
    grouped by duplication level and held-out text."""
    rng = np.random.default_rng(1)
    inserted = tmp_path / "inserted.jsonl"
    inserted.write_text("".join(json.dumps({"id": f"p{i}", "tokens": rng.integers(0, len(tokenizer), 20).tolist(),
                                            "dup": d}) + "\n" for i, d in enumerate([0, 1, 4, 16] * 5)))
    perturbed, standard = make_series("perturbed", steps=(1, 2)), make_series("standard", steps=(1, 2))
    for step in (1, 2):  # the twin: the same steps, other weights
        import torch
        from safetensors.torch import load_file, save_file

        weights = load_file(standard / f"step-{step}" / "model.safetensors")
        save_file({k: v + 0.01 * torch.randn_like(v) for k, v in weights.items()},
                  str(standard / f"step-{step}" / "model.safetensors"), metadata={"format": "pt"})

    def build(**series_overrides):
        return write_config({"series": [{"name": "perturbed", "local": str(perturbed), "reference": "standard",
                                         **series_overrides},
                                        {"name": "standard", "local": str(standard)}],
                             "datasets": [{"name": "inserted", "path": str(inserted), "seq_len": 20,
                                           "group_by": "dup"},
                                          {"name": "valid", "path": str(text_file), "role": "valid", "seq_len": 20,
                                           "max_samples": 10}],
                             "probes": {"memorization": {"k": 4, "m": 4}, "twin": {}}, "run": {"batch_size": 4}},
                            name="pair.yaml")
    return build


def test_twin_compares_each_checkpoint_with_the_twin_per_group(pair, run_cli, tmp_path):
    pd = pytest.importorskip("pandas")
    metrics = pytest.importorskip("sklearn.metrics")
    code, out, err = run_cli("run", pair(), "-k", "memorization or twin", "--json", tmp_path / "r.json",
                             "--samples-out", tmp_path / "rows")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    perturbed, standard = report["series"]
    result = perturbed["results"]["twin"]
    assert standard["results"]["twin"] == {} and set(result) >= {"inserted", "inserted[dup=0]", "inserted[dup=16]"}
    rows = pd.read_parquet(tmp_path / "rows")
    last = rows[rows.step == 2].pivot_table(index=["dataset", "sample_index"], columns="series",
                                            values="memorization_loss")
    ins = last.loc["inserted"]
    assert result["inserted"]["gain"] == pytest.approx((ins.standard - ins.perturbed).mean(), abs=1e-9)
    assert result["inserted"]["steps"] == [1, 2] and result["inserted"]["twin_steps"] == [1, 2]
    dup = rows[(rows.step == 2) & (rows.dataset == "inserted") & (rows.series == "perturbed")].set_index(
        "sample_index").data_dup
    score = ins.standard - ins.perturbed
    members, held_out = score[dup[score.index] == 16], score[dup[score.index] == 0]
    y = [1] * len(members) + [0] * len(held_out)
    assert result["inserted[dup=16]"]["auc_reference"] == pytest.approx(
        metrics.roc_auc_score(y, list(members) + list(held_out)), abs=1e-12)
    val = last.loc["valid"]
    y = [1] * len(ins) + [0] * len(val)
    assert result["inserted"]["auc_reference"] == pytest.approx(
        metrics.roc_auc_score(y, list(ins.standard - ins.perturbed) + list(val.standard - val.perturbed)), abs=1e-12)
    groups = [result[f"inserted[dup={d}]"] for d in (0, 1, 4, 16)]
    assert sum(g["gain"] * g["n_samples"] for g in groups) / 20 == pytest.approx(result["inserted"]["gain"])
    assert "twin" in out


@pytest.mark.parametrize("change, words", [
    ({"reference": "standrd"}, "reference 'standrd' is no series of the yaml. Did you mean 'standard'"),
    ({"reference": "perturbed"}, "names itself as its reference"),
])
def test_bad_pairings_are_refused(pair, run_cli, change, words):
    code, _, err = run_cli("run", pair(**change))
    assert code == 2 and words in err


def test_a_twin_without_the_step_names_the_nearest(pair, run_cli, tmp_path):
    import shutil
    import yaml

    config = pair()
    raw = yaml.safe_load(config.read_text())
    standard = tmp_path / "standard"
    shutil.move(standard / "step-2", standard / "step-3")
    code, _, err = run_cli("run", config)
    assert code == 2 and "has no checkpoint at step 2 (step-2); the nearest is step 1" in err
    raw["series"][0]["reference_at"] = "last"
    config.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli("run", config, "-k", "memorization or twin")
    assert code == 0, err


def test_a_twin_with_another_tokenizer_is_refused(make_series, corpus_text, text_file, write_config, run_cli):
    from memaudit.lab.tokenizer import train_bpe

    other = train_bpe([corpus_text[:20000]], vocab_size=350)
    config = write_config({"series": [{"name": "a", "local": str(make_series("a", steps=(1,))), "reference": "b"},
                                      {"name": "b", "local": str(make_series("b", steps=(1,), tok=other))}],
                           "datasets": [{"name": "d", "path": str(text_file), "seq_len": 16}],
                           "probes": {"twin": {}}}, name="tok.yaml")
    code, _, err = run_cli("run", config)
    assert code == 2 and "tokenize differently" in err


def test_the_twin_probe_without_any_reference_is_refused(grouped, run_cli, write_config):
    import yaml

    config, _ = grouped
    raw = yaml.safe_load(config.read_text())
    raw["probes"]["twin"] = {}
    code, _, err = run_cli("run", write_config(raw, name="no-twin.yaml"))
    assert code == 2 and "no series of the yaml names one" in err
