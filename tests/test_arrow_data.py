"""Parquet and Arrow token columns (memaudit/inputs/arrow.py), as `datasets` writes them: the same audit as the
same tokens from JSONL; bad files refused with the row or column named."""

import json
import sys

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _write(path, table):
    if path.suffix == ".parquet":
        pq.write_table(table, path, row_group_size=5)
    else:  # the Arrow stream format of datasets' save_to_disk
        with pa.OSFile(str(path), "wb") as f:
            writer = pa.ipc.new_stream(f, table.schema)
            writer.write_table(table, max_chunksize=4)
            writer.close()


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_an_audit_of_a_token_column_equals_the_audit_of_the_same_tokens_as_jsonl(tmp_path, make_series, tokenizer,
                                                                                 write_config, run_cli, suffix):
    rng = np.random.default_rng(4)
    sequences = [rng.integers(0, len(tokenizer), int(rng.integers(33, 40))).tolist() for _ in range(14)]
    _write(tmp_path / f"data{suffix}", pa.table({"text": ["-"] * 14, "input_ids": sequences}))
    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"tokens": s[:32]}) + "\n" for s in sequences[2:12]))
    series = make_series(steps=(1,))
    reports = []
    for name, extra in ((f"data{suffix}", {"first_sample": 2, "max_samples": 10}), ("data.jsonl", {})):
        path = write_config({"series": [{"name": "s", "local": str(series)}],
                             "datasets": [{"name": "d", "path": str(tmp_path / name), "seq_len": 32, **extra}],
                             "run": {"shard_size": 4, "batch_size": 2}}, name=f"{name}.yaml")
        code, _, err = run_cli("run", path, "-k", "memorization", "--no-cache", "--json", tmp_path / f"{name}.json")
        assert code == 0, err
        reports.append(json.loads((tmp_path / f"{name}.json").read_text()))
    assert reports[0]["series"][0]["checkpoints"][0]["results"] == reports[1]["series"][0]["checkpoints"][0]["results"]
    assert reports[0]["datasets"][0]["sha256"] == reports[1]["datasets"][0]["sha256"]


def test_fixed_size_lists_read_as_lists(tmp_path):
    """datasets' `Sequence(Value("int32"), length=n)` writes a fixed-size list column."""
    from memaudit.inputs.arrow import read_token_column

    sequences = np.arange(60, dtype=np.int32).reshape(10, 6)
    column = pa.FixedSizeListArray.from_arrays(pa.array(sequences.ravel()), 6)
    for suffix in (".parquet", ".arrow"):
        _write(tmp_path / f"d{suffix}", pa.table({"input_ids": column}))
        rows = read_token_column(tmp_path / f"d{suffix}", "d", seq_len=4, first=3, max_samples=5)
        assert rows.tolist() == sequences[3:8, :4].tolist()
    with pytest.raises(Exception, match="holds lists of 6 tokens, fewer than seq_len=7"):
        read_token_column(tmp_path / "d.parquet", "d", seq_len=7)


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_a_file_without_rows_is_refused(tmp_path, suffix):
    from memaudit.errors import ConfigError
    from memaudit.inputs.arrow import read_token_column

    _write(tmp_path / f"d{suffix}", pa.table({"input_ids": pa.array([], pa.list_(pa.int64()))}))
    with pytest.raises(ConfigError, match="has 0 rows"):
        read_token_column(tmp_path / f"d{suffix}", "Data set 'd'", seq_len=4)


@pytest.mark.parametrize("table, expected", [
    ({"text": ["a", "b"]}, "has no token column"),
    ({"input_ids": [[1, 2, 3], [4, 5]]}, "row 1 has 2 tokens"),
    ({"input_ids": [[1, 2, 3], None]}, "row 1 of column 'input_ids' is null"),
    ({"input_ids": [[1, 2, 3], [4, None, 6]]}, "null token id"),
    ({"tokens": ["abc", "def"]}, "not lists of integer token ids"),
    ({"input_ids": [[1, 2, 3], [4, 5, 10**9]]}, "another tokenizer"),
    ({"input_ids": pa.array([[1, 2, 3], [4, 5, 2**63 + 5]], pa.list_(pa.uint64()))},
     "holds token id 9223372036854775813, which is no token id"),  # not a negative id
])
def test_bad_token_columns_are_refused(tmp_path, make_series, write_config, run_cli, table, expected):
    _write(tmp_path / "d.parquet", pa.table(table))
    path = write_config({"series": [{"name": "s", "local": str(make_series(steps=(1,)))}],
                         "datasets": [{"name": "d", "path": str(tmp_path / "d.parquet"), "seq_len": 3}]})
    code, _, err = run_cli("run", path, "--no-cache")
    assert code == 2 and expected in err, err


def test_not_a_parquet_file_and_no_pyarrow(tmp_path, make_series, write_config, run_cli, monkeypatch):
    (tmp_path / "d.parquet").write_text("not parquet")
    path = write_config({"series": [{"name": "s", "local": str(make_series(steps=(1,)))}],
                         "datasets": [{"name": "d", "path": str(tmp_path / "d.parquet"), "seq_len": 3}]})
    code, _, err = run_cli("run", path, "--no-cache")
    assert code == 2 and "is not a readable parquet file" in err, err
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    code, _, err = run_cli("run", path, "--no-cache")
    assert code == 2 and "needs pyarrow" in err, err


def test_a_new_token_format_is_a_reader_and_one_entry(basic_config, run_cli, tmp_path, tokenizer, monkeypatch):
    """A format of token ids added as the maintainers' page says (a reader module and one TokenFormat entry): it
    audits to exactly the numbers of the same tokens given as .npy, and `first_sample` applies to it."""
    import json
    import sys

    import numpy as np

    from memaudit.inputs import data

    (tmp_path / "tokfile.py").write_text('''
import numpy as np
from memaudit.inputs.data import samples_from_rows


def read_tok(config, path, vocab_size):
    rows = np.array([[int(x) for x in line.split()] for line in path.read_text().splitlines()], dtype=np.int64)
    rows = rows[config.first_sample:, :config.seq_len][:config.max_samples]
    return samples_from_rows(config, rows, f"Data set '{config.name}': '{path}'", vocab_size)
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tokfile", raising=False)
    import tokfile

    monkeypatch.setattr(data, "TOKEN_FORMATS", [*data.TOKEN_FORMATS, data.TokenFormat((".tok",), tokfile.read_tok)])
    tokens = np.random.default_rng(0).integers(0, len(tokenizer), (10, 16))
    (tmp_path / "d.tok").write_text("\n".join(" ".join(map(str, row)) for row in tokens) + "\n")
    np.save(tmp_path / "d.npy", tokens)
    results = {}
    for suffix in ("tok", "npy"):
        config = basic_config(datasets=[{"name": "d", "path": str(tmp_path / f"d.{suffix}"), "seq_len": 16,
                                         "first_sample": 2}], run={"batch_size": 4})
        code, _, err = run_cli("run", config, "-k", "memorization", "--json", tmp_path / f"{suffix}.json", "--no-cache")
        assert code == 0, err
        results[suffix] = json.loads((tmp_path / f"{suffix}.json").read_text())["series"][0]["checkpoints"]
    assert [c["results"] for c in results["tok"]] == [c["results"] for c in results["npy"]]
    assert results["tok"][0]["results"]["memorization"]["d"]["n_samples"] == 8
