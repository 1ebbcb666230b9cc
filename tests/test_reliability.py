"""Resumable runs, Ctrl-C, corrupt cache entries, broken checkpoints, safe loading, disk and output errors."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import put_in_hf_cache, tiny_model

SLOW_PROBE = """
import time
from memaudit import probe

@probe
def slow(hits, pause: float = 0.4):
    time.sleep(pause)
    return {"slow": float(hits.mean())}
"""


def _results(report: dict) -> list:
    """What must not depend on how the run went: every probe result, series result and check."""
    return [([(c["name"], c["sha"], c["results"]) for c in s["checkpoints"]], s["results"]) for s in report["series"]] + \
        [[(c["name"], c["value"], c["passed"]) for c in report["checks"]]]


def _spawn(config, report, cache, *extra):
    env = {**os.environ, "MEMAUDIT_CACHE": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "memaudit", "run", str(config), "--json", str(report), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def _wait_for_records(cache: Path, n: int, proc, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(list(cache.glob("journal/*/*.json"))) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the run wrote no journal records in time")


@pytest.fixture
def slow_config(make_series, text_file, write_config, tmp_path):
    (tmp_path / "slow_probe.py").write_text(SLOW_PROBE)
    return write_config({
        "series": [{"name": "tiny", "local": str(make_series(steps=(1, 2, 3, 4, 5, 6)))}],
        "datasets": [{"name": "train", "path": str(text_file), "seq_len": 32, "max_samples": 8}],
        "probe_paths": [str(tmp_path / "slow_probe.py")], "select": "memorization or slow",
        "checks": [{"metric": "memorization.M", "max": 0.9, "at": "each"}]})


def test_killed_run_resumes_to_the_same_report(slow_config, tmp_path):
    fresh = _spawn(slow_config, tmp_path / "fresh.json", tmp_path / "cache-fresh")
    assert fresh.wait(timeout=300) == 0, fresh.communicate()
    cache = tmp_path / "cache"
    victim = _spawn(slow_config, tmp_path / "resumed.json", cache)
    _wait_for_records(cache, 2, victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "resumed.json").exists()
    done_before = len(list(cache.glob("journal/*/*.json")))
    resumed = _spawn(slow_config, tmp_path / "resumed.json", cache)
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    a = json.loads((tmp_path / "fresh.json").read_text())
    b = json.loads((tmp_path / "resumed.json").read_text())
    assert _results(a) == _results(b)
    assert sum(c["from_journal"] for c in b["series"][0]["checkpoints"]) == done_before >= 2


def test_ctrl_c_writes_a_partial_report_and_keeps_the_journal(slow_config, tmp_path):
    cache = tmp_path / "cache"
    proc = _spawn(slow_config, tmp_path / "r.json", cache)
    _wait_for_records(cache, 1, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 2
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "interrupted" and report["exit_code"] == 2
    assert 1 <= len(report["series"][0]["checkpoints"]) < 6
    assert list(cache.glob("journal/*/*.json"))


def test_corrupt_cache_entry_is_recomputed(basic_config, run_cli, tmp_path):
    config = basic_config()
    run_cli("run", config, "--json", tmp_path / "a.json", "-k", "memorization")
    entries = sorted((tmp_path / "memaudit-cache" / "products").rglob("*.npz"))
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # truncated
    for record in (tmp_path / "memaudit-cache" / "journal").rglob("*.json"):
        record.unlink()  # force the checkpoints through the products cache
    run_cli("run", config, "--json", tmp_path / "b.json", "-k", "memorization")
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert sum(c["n_forward_batches"] > 0 for c in b["series"][0]["checkpoints"]) == 1
    assert _results(a) == _results(b)


def _break_checkpoint(folder: Path, how: str) -> None:
    from safetensors.torch import load_file, save_file

    weights = folder / "model.safetensors"
    if how == "nan":
        state = load_file(weights)
        name = next(k for k in state if "embed_in" in k)
        state[name][:] = float("nan")
        save_file(state, weights, metadata={"format": "pt"})
    else:
        weights.write_bytes(b"not a safetensors file at all")


@pytest.mark.parametrize("how, message", [("nan", "NaN or infinite"), ("garbage", "Error")])
def test_a_broken_checkpoint_is_reported_and_the_run_goes_on(how, message, make_series, text_file, write_config,
                                                             run_cli, tmp_path):
    root = make_series(steps=(1, 2, 3))
    _break_checkpoint(root / "step-2", how)
    config = write_config({"series": [{"local": str(root)}],
                           "datasets": [{"name": "d", "path": str(text_file), "seq_len": 16, "max_samples": 4}]})
    code, out, err = run_cli("run", config, "--json", tmp_path / "r.json", "-k", "memorization")
    report = json.loads((tmp_path / "r.json").read_text())
    ckpts = report["series"][0]["checkpoints"]
    assert code == 1 and report["status"] == "error"
    assert message in ckpts[1]["error"] and ckpts[0]["error"] is None and ckpts[2]["error"] is None
    assert ckpts[2]["results"]["memorization"]["d"]["M"] is not None
    assert "1 error" in out and "ERROR" in out
    code, _, _ = run_cli("run", config, "--json", tmp_path / "x.json", "-x", "--no-cache", "-k", "memorization")
    assert code == 1 and len(json.loads((tmp_path / "x.json").read_text())["series"][0]["checkpoints"]) == 2


def test_duplicate_checkpoints_reuse_products(make_series, text_file, write_config, run_cli, tmp_path):
    import shutil

    root = make_series(steps=(1, 2))
    shutil.copytree(root / "step-2", root / "step-3")
    config = write_config({"series": [{"local": str(root)}],
                           "datasets": [{"name": "d", "path": str(text_file), "seq_len": 16, "max_samples": 4}]})
    code, _, err = run_cli("run", config, "--json", tmp_path / "r.json", "-k", "memorization")
    ckpts = json.loads((tmp_path / "r.json").read_text())["series"][0]["checkpoints"]
    assert code == 0, err
    assert ckpts[2]["duplicate_of"] == "step-2" and ckpts[2]["n_forward_batches"] == 0
    assert ckpts[2]["results"] == ckpts[1]["results"]


def test_duplicate_hub_revisions_are_recognised_by_their_blobs(make_series, text_file, write_config, run_cli,
                                                               tmp_path):
    import shutil

    root = make_series(steps=(1,))
    shutil.copytree(root / "step-1", root / "copy")
    (root / "copy" / "note.txt").write_text("another commit, same weights")
    cache = tmp_path / "hf"
    shas = put_in_hf_cache(cache, "org/dup", {"step0": root / "step-1", "step1": root / "copy"})
    assert shas["step0"] != shas["step1"]
    config = write_config({"series": [{"hub": "org/dup", "revisions": ["step0", "step1"], "hf_cache_dir": str(cache)}],
                           "datasets": [{"name": "d", "path": str(text_file), "seq_len": 16, "max_samples": 4}]})
    code, _, err = run_cli("run", config, "--json", tmp_path / "r.json", "-k", "memorization")
    ckpts = json.loads((tmp_path / "r.json").read_text())["series"][0]["checkpoints"]
    assert code == 0, err
    assert ckpts[1]["duplicate_of"] == "step0" and ckpts[1]["n_forward_batches"] == 0


def test_same_weights_under_another_config_are_not_duplicates(make_series, text_file, write_config, run_cli,
                                                              tmp_path):
    """A config-only fix (same safetensors, another config.json) is another model: scored, not reused."""
    import shutil

    root = make_series(steps=(1,))
    shutil.copytree(root / "step-1", root / "fixed")
    config_json = json.loads((root / "fixed" / "config.json").read_text())
    config_json["layer_norm_eps"] = 0.5
    (root / "fixed" / "config.json").write_text(json.dumps(config_json))
    cache = tmp_path / "hf"
    put_in_hf_cache(cache, "org/fix", {"step0": root / "step-1", "step1": root / "fixed"})
    config = write_config({"series": [{"hub": "org/fix", "revisions": ["step0", "step1"], "hf_cache_dir": str(cache)}],
                           "datasets": [{"name": "d", "path": str(text_file), "seq_len": 16, "max_samples": 4}]})
    code, _, err = run_cli("run", config, "--json", tmp_path / "r.json", "-k", "memorization")
    first, second = json.loads((tmp_path / "r.json").read_text())["series"][0]["checkpoints"]
    assert code == 0, err
    assert second["duplicate_of"] is None and second["n_forward_batches"] > 0
    assert first["results"]["memorization"]["d"]["loss"] != second["results"]["memorization"]["d"]["loss"]


def test_pickle_weights_need_allow_pickle(text_file, write_config, run_cli, tokenizer, tmp_path):
    folder = tmp_path / "s" / "step-1"
    model = tiny_model("gpt2", len(tokenizer), seed=0)
    model.save_pretrained(folder, safe_serialization=False)
    tokenizer.save_pretrained(folder)
    if not list(folder.glob("*.bin")):
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
        for f in folder.glob("*.safetensors"):
            f.unlink()
    config = write_config({"series": [{"local": str(tmp_path / "s")}],
                           "datasets": [{"name": "d", "path": str(text_file), "seq_len": 16, "max_samples": 2}]})
    code, _, err = run_cli("run", config, "-k", "memorization")
    assert code == 4 and "--allow-pickle" in err
    code, out, err = run_cli("run", config, "-k", "memorization", "--allow-pickle")
    assert code == 0, err


def test_evict_deletes_each_revision_after_scoring(make_series, text_file, write_config, run_cli, tmp_path):
    from huggingface_hub import scan_cache_dir

    root = make_series(steps=(1, 2))
    cache = tmp_path / "hf"
    put_in_hf_cache(cache, "org/evict", {"step1": root / "step-1", "step2": root / "step-2"})
    config = write_config({"series": [{"hub": "org/evict", "revisions": ["step1", "step2"],
                                       "hf_cache_dir": str(cache)}],
                           "datasets": [{"name": "d", "path": str(text_file), "seq_len": 16, "max_samples": 2}]})
    code, _, err = run_cli("run", config, "--evict", "-k", "memorization")
    assert code == 0, err
    assert not [r for r in scan_cache_dir(cache).repos if r.repo_id == "org/evict" and r.revisions]


def test_unwritable_report_path_fails_before_any_work(basic_config, run_cli, tmp_path, monkeypatch):
    import memaudit.inputs.sources

    monkeypatch.setattr(memaudit.inputs.sources, "load_model", lambda *a, **k: pytest.fail("started working"))
    (tmp_path / "a-file").write_text("")
    code, _, err = run_cli("run", basic_config(), "--json", tmp_path / "a-file" / "report.json")
    assert code == 2 and "Cannot write" in err


def test_disk_full_is_a_clear_error_with_nothing_half_written(basic_config, run_cli, tmp_path, monkeypatch):
    import memaudit.atomic

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(memaudit.atomic.os, "fsync", full)
    code, _, err = run_cli("run", basic_config(), "--json", tmp_path / "r.json")
    assert code == 2 and "disk is full" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.tmp")) and not (tmp_path / "r.json").exists()


def test_sequence_longer_than_the_context(make_series, text_file, write_config, run_cli):
    config = write_config({"series": [{"local": str(make_series(steps=(1,)))}],
                           "datasets": [{"name": "d", "path": str(text_file), "seq_len": 200}]})
    code, _, err = run_cli("run", config, "-k", "memorization")
    assert code == 2 and "context of 128" in err


def test_names_from_the_yaml_never_become_paths(make_series, text_file, write_config, run_cli, tmp_path):
    config = write_config({"series": [{"name": "../../yaml-name-escaped", "local": str(make_series(steps=(1,)))}],
                           "datasets": [{"name": "../d", "path": str(text_file), "seq_len": 16, "max_samples": 2}]})
    code, _, err = run_cli("run", config, "-k", "memorization")
    assert code == 0, err
    cache = tmp_path / "memaudit-cache"
    written = list(tmp_path.parent.rglob("yaml-name-escaped*"))
    assert not written and list(cache.rglob("*.json"))
