"""`--samples-out DIR`: a Parquet file per checkpoint with a row per sample, outside the report, resumable."""

import json
import sys

import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")


@pytest.fixture
def config(make_series, text_file, write_config, tmp_path):
    valid = tmp_path / "data" / "valid.txt"
    valid.write_text(text_file.read_text()[3000:], encoding="utf-8")
    return write_config({"series": [{"name": "tiny/../../escape", "local": str(make_series(steps=(1, 2)))}],
                         "datasets": [{"name": "train", "path": str(text_file), "seq_len": 24, "max_samples": 10},
                                      {"name": "valid", "path": str(valid), "role": "valid", "seq_len": 24,
                                       "max_samples": 6}],
                         "probes": {"memorization": {"k": 8, "m": 8}}, "run": {"batch_size": 4}})


def test_one_parquet_file_per_checkpoint_with_a_row_per_sample(config, tmp_path, run_cli):
    out = tmp_path / "samples"
    code, _, err = run_cli("run", config, "-k", "memorization or membership", "--samples-out", out,
                           "--json", tmp_path / "r.json")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    files = sorted(out.rglob("*.parquet"))
    assert len(files) == 2 and all(out in f.parents for f in files)  # the series name cannot leave DIR
    for c in report["series"][0]["checkpoints"]:
        pointer = c["samples_file"]
        assert "samples" not in c["results"]["memorization"]["train"]  # the report does not grow with the data
        frame = pd.read_parquet(out / pointer["file"])
        assert pointer["rows"] == len(frame) == 16
        train = frame[frame.dataset == "train"]
        assert train["index"].tolist() == list(range(10)) and train.id.tolist()[0] == "train:0"
        assert train["memorization.M"].mean() == pytest.approx(c["results"]["memorization"]["train"]["M"])
        assert train["memorization.extractable"].sum() == c["results"]["memorization"]["train"]["n_extractable"]
        assert frame.dataset.tolist() == ["train"] * 10 + ["valid"] * 6 and frame["membership.loss"].notna().all()
        assert frame["memorization.loss"].to_numpy() == pytest.approx(-frame["membership.loss"].to_numpy(), rel=1e-6)
        assert {"memorization.loss", "memorization.match_len", "membership.min_k_pp", "seen_at_step"} <= set(frame)


def test_a_rerun_reuses_the_journal_and_recomputes_a_missing_or_changed_file(config, tmp_path, run_cli):
    out = tmp_path / "samples"
    args = ("run", config, "-k", "memorization or membership", "--samples-out", out, "--json", tmp_path / "r.json")
    assert run_cli(*args)[0] == 0
    first = sorted(out.rglob("*.parquet"))
    before = {f: f.read_bytes() for f in first}
    assert run_cli(*args)[0] == 0
    again = json.loads((tmp_path / "r.json").read_text())["series"][0]["checkpoints"]
    assert all(c["from_journal"] for c in again) and {f: f.read_bytes() for f in first} == before
    first[0].unlink()
    assert run_cli(*args)[0] == 0
    third = json.loads((tmp_path / "r.json").read_text())["series"][0]["checkpoints"]
    assert sorted(c["from_journal"] for c in third) == [False, True] and first[0].is_file()
    assert pd.read_parquet(first[0]).equals(pd.read_parquet(first[1])) is False  # two checkpoints, two tables
    first[1].write_bytes(first[0].read_bytes())  # another run (here: the other checkpoint) wrote over it
    assert run_cli(*args)[0] == 0
    fourth = json.loads((tmp_path / "r.json").read_text())["series"][0]["checkpoints"]
    assert [c["from_journal"] for c in fourth] == [True, False] and {f: f.read_bytes() for f in first} == before


def test_samples_out_refuses_inputs_and_needs_pyarrow(config, tmp_path, run_cli, monkeypatch, text_file):
    code, _, err = run_cli("run", config, "--samples-out", text_file.parent)
    assert code == 2 and "would overwrite data set" in err
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    code, _, err = run_cli("run", config, "--samples-out", tmp_path / "s")
    assert code == 2 and "needs pyarrow" in err
