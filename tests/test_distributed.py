"""Several processes (torchrun, gloo on the CPU): the same report as one process; errors stay per checkpoint."""

import json
import os
import subprocess
import sys

import pytest
from test_reliability import _break_checkpoint, _results


def _run(config, report, cache, *extra):
    env = {**os.environ, "MEMAUDIT_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "memaudit", "run", str(config), "--json", str(report), *extra],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def series_config(make_series, text_file, write_config):
    def build(broken: str | None = None):
        root = make_series(steps=(1, 2, 3, 4))
        if broken:
            _break_checkpoint(root / broken, "garbage")
        return write_config({"series": [{"name": "tiny", "local": str(root)}],
                             "datasets": [{"name": "train", "path": str(text_file), "seq_len": 32, "max_samples": 8}],
                             "select": "memorization", "run": {"device": "cpu", "batch_size": 4},
                             "checks": [{"metric": "memorization.M", "max": 0.9, "at": "each"}]})
    return build


def test_two_processes_give_the_same_report_as_one(series_config, tmp_path):
    config = series_config()
    one = _run(config, tmp_path / "one.json", tmp_path / "cache-1")
    two = _run(config, tmp_path / "two.json", tmp_path / "cache-2", "--processes", "2")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert b["provenance"]["processes"] == 2 and a["provenance"]["processes"] == 1
    assert _results(a) == _results(b)
    assert two.stdout.count("memaudit audit") == 1  # only the main process prints the report


def test_a_failing_checkpoint_in_one_process_keeps_the_others(series_config, tmp_path):
    config = series_config(broken="step-1")  # process 0 gets step-1 and step-2
    run = _run(config, tmp_path / "r.json", tmp_path / "cache", "--processes", "2")
    assert run.returncode == 1, run.stderr[-3000:]
    ckpts = json.loads((tmp_path / "r.json").read_text())["series"][0]["checkpoints"]
    assert [c["name"] for c in ckpts] == ["step-1", "step-2", "step-3", "step-4"]
    assert ckpts[0]["error"] and all(c["error"] is None and c["results"] for c in ckpts[1:])
    records = list((tmp_path / "cache" / "journal").rglob("*.json"))
    assert len(records) == 3  # the main process journaled every finished checkpoint, from both processes


def test_continuations_are_the_same_on_two_processes(make_series, text_file, write_config, tmp_path):
    """One checkpoint, two processes: each scores and continues its share of the shards (sampled draws keyed by
    sample, not by batch or process), and the report equals one process's."""
    config = write_config({"series": [{"name": "tiny", "local": str(make_series(steps=(1,)))}],
                           "datasets": [{"name": "train", "path": str(text_file), "seq_len": 32, "max_samples": 12},
                                        {"name": "more", "path": str(text_file), "seq_len": 24, "max_samples": 10},
                                        {"name": "one-shard", "path": str(text_file), "seq_len": 20, "max_samples": 3}],
                           "probes": {"generation": {"prefixes": [6], "schemes": [{"top_k": 20}], "n": 2}},
                           "select": "generation", "run": {"device": "cpu", "batch_size": 4, "shard_size": 4}})
    one = _run(config, tmp_path / "one.json", tmp_path / "cache-1")
    two = _run(config, tmp_path / "two.json", tmp_path / "cache-2", "--processes", "2")
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert _results(a) == _results(b)
    assert a["series"][0]["checkpoints"][0]["results"]["generation"]["train"]["n_generated[k=6]"] == 12
