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
        assert train["sample_index"].tolist() == list(range(10)) and train.sample_id.tolist()[0] == "train:0"
        assert set(frame.checkpoint) == {c["name"]} and set(frame.step) == {c["step"]}
        assert set(frame.series) == {"tiny/../../escape"}
        assert train["memorization_M"].mean() == pytest.approx(c["results"]["memorization"]["train"]["M"])
        assert train["memorization_extractable"].sum() == c["results"]["memorization"]["train"]["n_extractable"]
        assert frame.dataset.tolist() == ["train"] * 10 + ["valid"] * 6 and frame["membership_loss_score"].notna().all()
        # one sign convention: a loss is positive, a membership score is higher for members (= -loss here)
        assert frame["memorization_loss"].to_numpy() == pytest.approx(-frame["membership_loss_score"].to_numpy(),
                                                                       rel=1e-6)
        assert (frame["memorization_loss"] > 0).all()
        assert {"memorization_loss", "memorization_match_len", "membership_min_k_pp_score", "seen_at_step"} <= set(frame)
        floats = [name for name, kind in frame.dtypes.items() if kind.kind == "f"]
        assert all(frame[name].dtype == "float64" for name in floats)


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


def test_a_samples_out_folder_reads_as_one_table_in_four_readers(config, tmp_path, run_cli):
    """pandas, pyarrow.dataset, polars and datasets read the folder as one table whose rows say their series,
    checkpoint and step; every file describes its columns in its metadata."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    pl = pytest.importorskip("polars")
    hf_datasets = pytest.importorskip("datasets")
    out = tmp_path / "samples"
    code, _, err = run_cli("run", config, "-k", "memorization or membership", "--samples-out", out)
    assert code == 0, err
    key = ["series", "checkpoint", "dataset", "sample_index"]
    frames = {"pandas": pd.read_parquet(out),
              "pyarrow": ds.dataset(out, format="parquet").to_table().to_pandas(),
              "polars": pl.scan_parquet(out / "**" / "*.parquet").collect().to_pandas(),
              "datasets": hf_datasets.load_dataset("parquet", data_files=str(out / "**" / "*.parquet"),
                                                   split="train", cache_dir=str(tmp_path / "hf")).to_pandas()}
    frames = {name: f.sort_values(key).reset_index(drop=True) for name, f in frames.items()}
    reference = frames["pandas"]
    assert len(reference) == 32 and set(reference.checkpoint) == {"step-1", "step-2"}
    assert sorted(set(zip(reference.checkpoint, reference.step))) == [("step-1", 1), ("step-2", 2)]
    for name, f in frames.items():
        pd.testing.assert_frame_equal(f[list(reference.columns)], reference, check_dtype=False, obj=name)
    schema = pq.read_schema(sorted(out.rglob("*.parquet"))[0])
    about = json.loads(schema.metadata[b"memaudit"])
    assert about["columns"]["memorization_loss"].startswith("mean next-token negative log-likelihood")
    assert "config_hash" in about and about["memaudit_version"]
    assert schema.field("membership_loss_score").metadata[b"description"].startswith(b"mean log-likelihood")


def test_per_sample_p_z_gives_the_report_s_extraction_aggregates(make_series, text_file, write_config, tmp_path,
                                                                  run_cli):
    """extraction_risk's rates, percentiles and greedy rate recomputed from the Parquet's per-sample log10 p_z."""
    import numpy as np

    config = write_config({"series": [{"name": "s", "local": str(make_series(steps=(1,)))}],
                           "datasets": [{"name": "train", "path": str(text_file), "seq_len": 24, "max_samples": 12}],
                           "probes": {"extraction_risk": {"pairs": [[8, 8], [4, 12]], "n": [1, 1000], "p": [0.5],
                                                          "schemes": [{"temperature": 1.0}, {"top_k": 40}]}},
                           "run": {"batch_size": 4, "shard_size": 4}})
    out = tmp_path / "samples"
    code, _, err = run_cli("run", config, "-k", "extraction_risk", "--samples-out", out, "--json", tmp_path / "r.json")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    metrics = report["series"][0]["checkpoints"][0]["results"]["extraction_risk"]["train"]
    frame = pd.read_parquet(out)
    for k, m in ((8, 8), (4, 12)):
        assert frame[f"extraction_risk_greedy__k{k}_m{m}"].mean() == metrics[f"greedy_rate[k={k},m={m}]"]
        for label, slug in (("T=1.0", "T1_0"), ("T=1.0,top_k=40", "T1_0__top_k40")):
            log10 = frame[f"extraction_risk_log10_pz__{slug}__k{k}_m{m}"].to_numpy()
            where = f"[{label}][k={k},m={m}]"
            p90, expected = np.percentile(log10, 90, method="nearest"), metrics[f"log10_pz_p90{where}"]
            assert p90 == pytest.approx(expected) if expected is not None else p90 == -np.inf  # JSON: -inf is null
            for n in (1, 1000):
                pz = 10.0 ** log10
                found = 1 - (1 - pz) ** n >= 0.5 - 1e-12
                assert found.mean() == pytest.approx(metrics[f"rate{where}[n={n},p=0.5]"])
    assert np.isneginf(frame.filter(like="top_k40").to_numpy()).any()  # p_z exactly 0 is -inf, not NaN


def test_canary_candidates_reach_the_rows_and_give_the_exposure(small_lab, tmp_path, run_cli):
    """Each canary candidate's log-perplexity is a row; the report's exposure is recomputed from them."""
    from memaudit.inputs.canaries import exposure

    code, _, err = run_cli("run", small_lab / "checkpoints.yaml", "-k", "canaries", "--samples-out",
                           tmp_path / "rows", "--json", tmp_path / "r.json")
    assert code in (0, 1), err
    report = json.loads((tmp_path / "r.json").read_text())
    info = next(d for d in report["datasets"] if d["role"] == "canary")
    series = report["series"][0]
    rows = pd.read_parquet(tmp_path / "rows")
    last = rows[(rows.series == series["name"]) & (rows.checkpoint == series["checkpoints"][-1]["name"])
                & (rows.dataset == info["name"])]
    cid = next(iter(info["canaries"]))
    mine = last[last.sample_id.str.rsplit("#", n=1).str[0] == cid].canaries_log_perplexity.to_numpy()
    expected = series["checkpoints"][-1]["results"]["canaries"][info["name"]]["exposure"][cid]
    meta = info["canaries"][cid]
    assert exposure(mine, meta["space"], meta["exact"])["exposure"] == pytest.approx(expected)


def test_a_new_probe_s_per_sample_columns_come_from_its_own_declaration(basic_config, run_cli, tmp_path):
    """A probe with per-sample rows, in a file of its own (the only file touched): its declared columns reach the
    Parquet files typed and described, an undeclared column keeps its values' type, and the report records them."""
    pq = pytest.importorskip("pyarrow.parquet")
    import memaudit

    (tmp_path / "my_probes").mkdir()
    (tmp_path / "my_probes" / "odd.py").write_text('''
import numpy as np
from memaudit import Column, probe


def odd_rows(tokens):
    return {"n_odd": (tokens % 2 == 1).sum(axis=1), "all_even": (tokens % 2 == 0).all(axis=1),
            "first": tokens[:, 0].astype(np.int64)}


@probe(rows=odd_rows, columns={"n_odd": Column("int64", "odd token ids in the sample", unit="tokens"),
                                "all_even": Column("bool", "every token id is even", name="even")})
def odd(rows):
    """How many token ids are odd."""
    return {"mean_odd": float(rows["n_odd"].mean())}
''')
    config = basic_config(probe_paths=[str(tmp_path / "my_probes")])
    code, _, err = run_cli("run", config, "-k", "odd", "--json", tmp_path / "r.json", "--samples-out", tmp_path / "rows")
    assert code == 0, err
    table = pq.read_table(next((tmp_path / "rows").rglob("*.parquet")))
    types = {f.name: str(f.type) for f in table.schema}
    assert types["odd_n_odd"] == "int64" and types["odd_even"] == "bool" and types["odd_first"] == "int64"
    meta = table.schema.field("odd_n_odd").metadata
    assert meta[b"description"] == b"odd token ids in the sample" and meta[b"unit"] == b"tokens"
    assert b"not declared" in table.schema.field("odd_first").metadata[b"description"]
    report = memaudit.read_report(tmp_path / "r.json")
    assert report.probes[0].columns["all_even"].name == "even"


def test_a_changed_column_declaration_writes_the_files_again(basic_config, run_cli, tmp_path):
    """The declaration is part of the probe's journal key: renaming a column (its function unchanged) does not
    reuse the files written under the old name."""
    pq = pytest.importorskip("pyarrow.parquet")

    probe_file = tmp_path / "my_probes" / "odd.py"
    probe_file.parent.mkdir()
    source = '''
from memaudit import Column, probe

COLUMNS = {"n_odd": Column("int64", "odd token ids in the sample", name="NAME")}


def odd_rows(tokens):
    return {"n_odd": (tokens % 2 == 1).sum(axis=1)}


@probe(rows=odd_rows, columns=COLUMNS)
def odd(rows):
    """How many token ids are odd."""
    return {"mean_odd": float(rows["n_odd"].mean())}
'''
    config = basic_config(probe_paths=[str(probe_file.parent)])
    for name in ("first", "second"):
        probe_file.write_text(source.replace("NAME", name))
        code, _, err = run_cli("run", config, "-k", "odd", "--samples-out", tmp_path / "rows")
        assert code == 0, err
        columns = pq.read_schema(next((tmp_path / "rows").rglob("*.parquet"))).names
        assert f"odd_{name}" in columns and all(not c.startswith("odd_") or c == f"odd_{name}" for c in columns)


def test_a_text_column_reaches_the_rows_whole(basic_config, run_cli, tmp_path):
    """A rows function may return text (a numpy str array): it is journaled and written to Parquet as a string
    column, whole, control characters and NUL included (pyarrow alone would cut a numpy string at its first NUL)."""
    pq = pytest.importorskip("pyarrow.parquet")

    (tmp_path / "my_probes").mkdir()
    (tmp_path / "my_probes" / "texty.py").write_text('''
import numpy as np
from memaudit import Column, probe


def texty_rows(tokens):
    return {"label": np.array([f"a\\x00b{t}\\x1b" for t in tokens[:, 0]])}


@probe(rows=texty_rows, columns={"label": Column("string", "a label with a NUL inside")})
def texty(rows):
    """A text per sample."""
    return {"n": len(rows["label"])}
''')
    config = basic_config(probe_paths=[str(tmp_path / "my_probes")])
    for attempt in ("fresh", "files deleted, the rest stored"):
        code, _, err = run_cli("run", config, "-k", "texty", "--samples-out", tmp_path / "rows")
        assert code == 0, err
        files = sorted((tmp_path / "rows").rglob("*.parquet"))
        table = pq.read_table(files[0])
        assert str(table.schema.field("texty_label").type) == "string"
        labels = table.column("texty_label").to_pylist()
        assert all(label.startswith("a\x00b") and label.endswith("\x1b") for label in labels), attempt
        for f in files:
            f.unlink()
