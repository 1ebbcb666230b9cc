"""Shard-wise scoring (memaudit.engine.shards): the same results however the samples are cut, resumable after
kill -9 at a shard boundary, shards split over two processes, and the rows-function protocol's errors."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

SELECT = "memorization or membership or memorized_strings"


@pytest.fixture
def shard_config(make_series, text_file, write_config, tmp_path):
    """A one-checkpoint series; train: 20 samples, valid: 8, batches of 4."""
    valid = tmp_path / "data" / "valid.txt"
    valid.write_text(text_file.read_text()[3000:], encoding="utf-8")
    root = make_series(steps=(1,))

    def build(shard_size: int, select: str = SELECT, probe_paths=()):
        return write_config({"series": [{"name": "tiny", "local": str(root)}],
                             "datasets": [{"name": "train", "path": str(text_file), "seq_len": 24, "max_samples": 20},
                                          {"name": "valid", "path": str(valid), "role": "valid", "seq_len": 24,
                                           "max_samples": 8}],
                             "probes": {"memorization": {"k": 8, "m": 8}, "memorized_strings": {"k": 4, "m": 4}},
                             "probe_paths": [str(p) for p in probe_paths], "select": select,
                             "run": {"device": "cpu", "batch_size": 4, "shard_size": shard_size}},
                            name=f"shards-{shard_size}.yaml")
    return build


def _run(config, out, cache, *extra, env=None):
    """`memaudit run` in a child process; its report."""
    run = subprocess.run([sys.executable, "-m", "memaudit", "run", str(config), "--json", str(out / "r.json"),
                          "--samples-out", str(out / "samples"), "-q", *extra], capture_output=True, text=True,
                         env={**os.environ, "MEMAUDIT_CACHE": str(cache), **(env or {})}, timeout=600)
    return run


def _report(out):
    return json.loads((out / "r.json").read_text())


def _parquet(out):
    files = sorted((out / "samples").rglob("*.parquet"))
    assert len(files) == 1
    return pd.read_parquet(files[0])


def test_results_do_not_depend_on_the_shard_size(shard_config, tmp_path, run_cli):
    reports, frames = [], []
    for size in (1024, 4):  # one shard per data set, then 5 + 2 shards
        out = tmp_path / f"out-{size}"
        code, _, err = run_cli("run", shard_config(size), "--no-cache", "--json", out / "r.json", "--samples-out",
                               out / "samples")
        assert code == 0, err
        reports.append(_report(out))
        frames.append(_parquet(out))
    one, many = (r["series"][0]["checkpoints"][0] for r in reports)
    assert one["results"] == many["results"]  # exactly: M, loss, percentiles, AUCs, memorized strings
    assert one["n_forward_batches"] == many["n_forward_batches"] == 7
    assert frames[0].equals(frames[1]) and len(frames[0]) == 28
    assert one["results"]["memorized_strings"]["train"]["n_extractable"] is not None  # a whole-array probe ran too


def test_memory_is_handed_back_around_every_shard(shard_config, tmp_path, run_cli, monkeypatch):
    import memaudit.engine.checkpoint as run_module  # where a checkpoint is scored shard by shard

    calls = {"trim": 0, "pages": 0}
    monkeypatch.setattr(run_module, "trim_heap", lambda: calls.__setitem__("trim", calls["trim"] + 1))
    monkeypatch.setattr(run_module, "release_pages", lambda a: calls.__setitem__("pages", calls["pages"] + 1))
    code, _, err = run_cli("run", shard_config(4, select="memorization"), "--no-cache", "--json", tmp_path / "r.json")
    assert code == 0, err
    assert calls == {"trim": 7 + 1, "pages": 7}  # before each of 5 + 2 shards, after the checkpoint


KILLER = textwrap.dedent('''
    import os
    import signal
    from pathlib import Path

    from memaudit import probe


    def killer_rows(hits):
        """Counts the shards it sees; with $KILL_FLAG present, kills its own process at the third (kill -9)."""
        flag = Path(os.environ.get("KILL_FLAG", "/nonexistent"))
        count = Path(os.environ["KILL_COUNT"])
        n = int(count.read_text()) + 1 if count.exists() else 1
        count.write_text(str(n))
        if n == 3 and flag.exists():
            flag.unlink()
            os.kill(os.getpid(), signal.SIGKILL)
        return {"any_hit": hits.any(axis=1)}


    @probe(rows=killer_rows)
    def killer(rows):
        return {"n": int(len(rows["any_hit"]))}
''')


def test_a_run_killed_mid_checkpoint_resumes_at_the_last_finished_shard(shard_config, tmp_path):
    probe_file = tmp_path / "killer.py"
    probe_file.write_text(KILLER)
    config = shard_config(4, select="memorization or membership or killer", probe_paths=[probe_file])
    (tmp_path / "flag").touch()
    env = {"KILL_FLAG": str(tmp_path / "flag"), "KILL_COUNT": str(tmp_path / "count")}
    killed = _run(config, tmp_path / "a", tmp_path / "cache-a", env=env)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert len(list((tmp_path / "cache-a" / "shards").rglob("*.npz"))) == 2  # train's shards 0 and 1 finished
    assert not list((tmp_path / "a" / "samples").rglob("*.parquet"))  # nothing half-written in DIR

    resumed = _run(config, tmp_path / "a", tmp_path / "cache-a", env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole = _run(config, tmp_path / "b", tmp_path / "cache-b", env=env)
    assert whole.returncode == 0, whole.stderr[-2000:]
    a, b = (_report(tmp_path / x)["series"][0]["checkpoints"][0] for x in "ab")
    assert a["n_forward_batches"] == 5 and b["n_forward_batches"] == 7  # 3 + 2 shards left, of 5 + 2
    assert a["results"] == b["results"] and _parquet(tmp_path / "a").equals(_parquet(tmp_path / "b"))
    assert not list((tmp_path / "cache-b" / "products").rglob("*.npz"))  # no per-token arrays kept for sharded data
    assert len(list((tmp_path / "cache-b" / "shards").rglob("*.npz"))) == 7


def test_two_processes_split_the_shards_of_one_checkpoint(shard_config, tmp_path):
    config = shard_config(4)
    one = _run(config, tmp_path / "one", tmp_path / "cache-1")
    two = _run(config, tmp_path / "two", tmp_path / "cache-2", "--processes", "2")
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _report(tmp_path / "one"), _report(tmp_path / "two")
    assert b["provenance"]["processes"] == 2
    ca, cb = a["series"][0]["checkpoints"][0], b["series"][0]["checkpoints"][0]
    assert ca["results"] == cb["results"] and ca["n_forward_batches"] == cb["n_forward_batches"] == 7
    assert _parquet(tmp_path / "one").equals(_parquet(tmp_path / "two"))
    assert len(list((tmp_path / "cache-2" / "shards").rglob("*.npz"))) == 7  # each process journaled its shards


@pytest.mark.parametrize("rows_source, expected", [
    ("def bad_rows(hits):\n    return {'x': hits}\n", "one number or boolean per sample"),
    ("def bad_rows(hits):\n    return [1]\n", "it must return a dict of columns"),
    ("def bad_rows(hits):\n    return {'a.b': hits[:, 0]}\n", "named without dots"),
    ("def bad_rows(hits):\n    raise ValueError('boom')\n", "raised ValueError: boom"),
])
def test_a_broken_rows_function_is_a_probe_bug(shard_config, tmp_path, run_cli, rows_source, expected):
    probe_file = tmp_path / "bad.py"
    probe_file.write_text("from memaudit import probe\n\n" + rows_source +
                          "\n\n@probe(rows=bad_rows)\ndef bad(rows):\n    return {}\n")
    code, _, err = run_cli("run", shard_config(4, select="bad", probe_paths=[probe_file]), "--no-cache")
    assert code == 3 and "bad" in err and expected in err


def test_a_rows_function_may_ask_only_for_per_sample_products(shard_config, tmp_path, run_cli):
    probe_file = tmp_path / "bad.py"
    probe_file.write_text("from memaudit import probe\n\ndef bad_rows(hitz):\n    return {}\n\n"
                          "@probe(rows=bad_rows)\ndef bad(rows):\n    return {}\n")
    code, _, err = run_cli("run", shard_config(4, select="bad", probe_paths=[probe_file]), "--no-cache")
    assert code == 2 and "'hitz'" in err and "did you mean 'hits'" in err.lower()


def test_samples_out_needs_a_probe_with_rows(shard_config, tmp_path, run_cli, write_config):
    code, _, err = run_cli("run", shard_config(4, select="memorized_strings"), "--samples-out", tmp_path / "s")
    assert code == 2 and "none is selected" in err
    for bad in (0, -5, "many", 2.5):
        config = yaml_with(shard_config(4), shard_size=bad)
        code, _, err = run_cli("run", config)
        assert code == 2 and "shard_size" in err, err


def yaml_with(path, **run_values):
    import yaml

    content = yaml.safe_load(path.read_text())
    content["run"].update(run_values)
    path.write_text(yaml.safe_dump(content))
    return path


def test_progress_shows_each_shard_with_samples_per_second_and_an_eta():
    import io

    from rich.console import Console

    from memaudit.results.events import CheckpointStarted, SeriesStarted, ShardScored
    from memaudit.report.progress import AuditProgress

    log = io.StringIO()
    with AuditProgress(Console(file=log, width=200)) as progress:  # not a terminal: a line per shard
        progress(SeriesStarted("tiny", n_checkpoints=1, tokens_per_checkpoint=100))
        progress(CheckpointStarted("tiny", "step-1"))
        progress(ShardScored("train", done=2, total=5, samples=2000, remaining=3000, seconds=4.0))
    assert "tiny step-1 train: shard 2/5, 500 samples/s, ETA 00:00:06" in log.getvalue()
    terminal = io.StringIO()
    with AuditProgress(Console(file=terminal, force_terminal=True, width=200)) as progress:  # a bar per shard
        progress(SeriesStarted("tiny", n_checkpoints=1, tokens_per_checkpoint=100))
        progress(ShardScored("train", done=1, total=5, samples=1000, remaining=4000, seconds=1.0))
        progress.progress.refresh()
    assert "shards of train" in terminal.getvalue() and "1,000 samples/s" in terminal.getvalue()


def test_numbered_ids_behave_as_the_list_of_their_strings():
    from memaudit.inputs.samples import NumberedIds

    ids, listed = NumberedIds("d:", 5, 10), [f"d:{i}" for i in range(5, 15)]
    assert ids == listed and listed == ids and list(ids) == listed and len(ids) == 10
    assert ids[0] == "d:5" and ids[-1] == "d:14" and list(ids[2:4]) == listed[2:4] and ids[::3] == listed[::3]
    assert "d:7" in ids and "d:4" not in ids and "d:07" not in ids and "d:15" not in ids and 7 not in ids
    with pytest.raises(IndexError):
        ids[10]


@pytest.mark.parametrize("change", ["rewrite", "truncate"])
def test_an_npy_changed_during_a_sharded_run_stores_nothing(make_series, write_config, tokenizer, tmp_path,
                                                           run_cli, monkeypatch, change):
    """The .npy is rewritten (other tokens) or cut short after the first shard: the run stops with exit 2,
    nothing computed after the change is journaled, and once the file is restored the rerun gives the
    results of an undisturbed run (the journal holds no mix of the two data sets)."""
    import numpy as np

    from memaudit.engine.shards import ShardJournal

    tokens = np.random.default_rng(0).integers(0, len(tokenizer), (16, 24))
    path = tmp_path / "train.npy"
    np.save(path, tokens)
    config = write_config({"series": [{"name": "tiny", "local": str(make_series(steps=(1,)))}],
                           "datasets": [{"name": "train", "path": str(path), "seq_len": 24}],
                           "select": "memorization", "run": {"batch_size": 4, "shard_size": 4}})
    put = ShardJournal.put

    def put_then_change(self, key, rows):
        put(self, key, rows)
        if change == "rewrite":
            np.save(path, (tokens + 1) % len(tokenizer))
        else:
            with open(path, "r+b") as f:
                f.truncate(200)

    monkeypatch.setattr(ShardJournal, "put", put_then_change)
    code, _, err = run_cli("run", config, "--json", tmp_path / "r.json")
    assert code == 2 and "changed while the audit was reading it" in err and "Traceback" not in err
    monkeypatch.setattr(ShardJournal, "put", put)
    np.save(path, tokens)
    code, _, err = run_cli("run", config, "--json", tmp_path / "r.json")
    assert code == 0, err
    code, _, err = run_cli("run", config, "--no-cache", "--json", tmp_path / "fresh.json")
    resumed, fresh = (json.loads((tmp_path / n).read_text())["series"][0]["checkpoints"][0]["results"]
                      for n in ("r.json", "fresh.json"))
    assert resumed == fresh
