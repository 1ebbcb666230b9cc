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
