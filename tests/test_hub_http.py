"""A series from a Hub server on the loopback address (memaudit.lab.hub_server): the real huggingface_hub client and
cache layout, reached through the documented `HF_ENDPOINT` setting. Downloads, a transfer cut in the middle,
revisions that are gone or whose server fails, eviction, a branch that moves, two processes sharing one cache.

Every run is a `memaudit` process whose proxies point at a closed port on the loopback (`NO_PROXY` lets only the
loopback through), so a request to any other address fails instead of leaving the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_model

from memaudit.lab.hub_server import Fault, HubServer, serve_series

REPO = "test-org/tiny-neox"


@pytest.fixture
def hub_root(tmp_path, make_series) -> Path:
    """A repository with branches step1, step2, step3 (tiny random GPT-NeoX checkpoints sharing a tokenizer)."""
    local = make_series("local", steps=(1, 2, 3))
    root = tmp_path / "hub"
    serve_series(root, REPO, {f"step{s}": local / f"step-{s}" for s in (1, 2, 3)})
    return root


@pytest.fixture
def audit(tmp_path, text_file, write_config):
    """Run `memaudit run` against a hub at `url` in its own process; returns (exit code, report or None, output)."""

    def run(url: str, *extra: str, revisions=None, hf_home: Path | None = None, cache: Path | None = None,
            settings: dict | None = None, name: str = "hub", datasets: list | None = None):
        config = write_config({
            "series": [{"name": "tiny", "hub": REPO, "revisions": revisions or {"pattern": "step*"}}],
            "datasets": datasets or [{"name": "train", "path": str(text_file), "seq_len": 32, "max_samples": 8}],
            "select": "memorization", "run": {"device": "cpu", "batch_size": 4, "hub_backoff_s": 0.05,
                                              **(settings or {})}}, name=f"{name}.yaml")
        report = tmp_path / f"{name}.json"
        report.unlink(missing_ok=True)
        env = {**os.environ, "HF_ENDPOINT": url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(hf_home or tmp_path / "hf"),
               "HF_HUB_CACHE": str((hf_home or tmp_path / "hf") / "hub"), "HF_HUB_DISABLE_TELEMETRY": "1",
               "MEMAUDIT_CACHE": str(cache or tmp_path / "memaudit-cache"),
               "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "ALL_PROXY": "http://127.0.0.1:9",
               "NO_PROXY": "127.0.0.1,localhost"}
        done = subprocess.run([sys.executable, "-m", "memaudit", "run", str(config), "--json", str(report), *extra],
                              capture_output=True, text=True, env=env, timeout=300)
        result = json.loads(report.read_text()) if report.exists() else None
        return done.returncode, result, done.stdout + done.stderr

    return run


def metrics(report) -> dict[str, float | None]:
    """checkpoint -> memorization M on train (None for an errored checkpoint)."""
    return {c["name"]: (c["results"].get("memorization") or {}).get("train", {}).get("M")
            for c in report["series"][0]["checkpoints"]}


def weights_blobs(hf_home: Path) -> list[Path]:
    return [p for p in (hf_home / "hub").rglob("blobs/*") if p.stat().st_size > 100_000]


def test_a_series_over_http_audits_as_its_local_folders(hub_root, audit, tmp_path, make_series, write_config,
                                                        text_file):
    """Three revisions download through huggingface_hub from the loopback hub and give the M of the same checkpoints
    read from local folders; each weights file is fetched once; nothing is asked of any other address."""
    with HubServer(hub_root, max_seconds=240) as hub:
        code, report, out = audit(hub.url)
    assert code == 0, out
    local = write_config({"series": [{"name": "tiny", "local": str(tmp_path / "local")}],
                          "datasets": [{"name": "train", "path": str(text_file), "seq_len": 32, "max_samples": 8}],
                          "select": "memorization", "run": {"device": "cpu", "batch_size": 4}}, name="local.yaml")
    done = subprocess.run([sys.executable, "-m", "memaudit", "run", str(local), "--json", str(tmp_path / "l.json")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MEMAUDIT_CACHE": str(tmp_path / "local-cache")})
    assert done.returncode == 0, done.stderr
    by_step = {f"step{c['step']}": c["results"]["memorization"]["train"]["M"]
               for c in json.loads((tmp_path / "l.json").read_text())["series"][0]["checkpoints"]}
    assert metrics(report) == by_step and len(by_step) == 3
    assert sorted(hub.downloads().values()) == [1, 1, 1]  # each revision's weights, once
    assert all(c["sha"] and len(c["sha"]) == 40 for c in report["series"][0]["checkpoints"])


def test_a_transfer_cut_in_the_middle_is_fetched_again_and_never_loaded_short(hub_root, audit, tmp_path):
    """The server closes the connection 50 kB into step2's weights: the file is fetched again, the result is the
    uncut one, and the cache holds only whole files."""
    with HubServer(hub_root, max_seconds=240) as clean:
        _, uncut, _ = audit(clean.url, hf_home=tmp_path / "hf-clean", cache=tmp_path / "cache-clean", name="clean")
    sha2 = next(c["sha"] for c in uncut["series"][0]["checkpoints"] if c["name"] == "step2")
    cut = Fault(path=f"{sha2}/model\\.safetensors$", cut_after=50_000)
    with HubServer(hub_root, faults=[cut], max_seconds=240) as hub:
        code, report, out = audit(hub.url)
    assert code == 0, out
    assert metrics(report) == metrics(uncut)
    tries = [e for e in hub.log if e.method == "GET" and e.path.endswith(f"{sha2}/model.safetensors")]
    assert [e.status for e in tries][:1] == [499] and tries[-1].status in (200, 206) and len(tries) >= 2
    sizes = {p.stat().st_size for p in weights_blobs(tmp_path / "hf")}
    assert sizes == {p.stat().st_size for p in weights_blobs(tmp_path / "hf-clean")}  # whole files only
    assert not list((tmp_path / "hf").rglob("*.incomplete"))


def test_a_gone_revision_and_a_failing_server_cost_only_their_checkpoints(hub_root, audit, tmp_path):
    """A revision the repo does not have (404) and one whose server answers 500 (after `hub_retries` tries with
    backoff) are errored checkpoints (exit 4); the other is audited and journaled, so a rerun reads it back."""
    failing = Fault(path=r"/api/models/.*/revision/step3$", status=500, times=100)
    with HubServer(hub_root, faults=[failing], max_seconds=240) as hub:
        code, report, out = audit(hub.url, revisions=["step1", "step9", "step3"], settings={"hub_retries": 2})
    assert code == 4, out
    errors = {c["name"]: c["error"] for c in report["series"][0]["checkpoints"]}
    assert errors["step1"] is None
    assert "has no revision 'step9'" in errors["step9"] and "500" in errors["step3"] and "tried 3 times" in errors["step3"]
    assert sum(1 for e in hub.log if e.path.endswith("/revision/step3")) == 3  # bounded: the first try and 2 retries
    with HubServer(hub_root, max_seconds=240) as hub:
        code, again, out = audit(hub.url, revisions=["step1", "step3"])
    assert code == 0, out
    first = {c["name"]: c for c in again["series"][0]["checkpoints"]}
    assert first["step1"]["from_journal"] and not first["step3"]["from_journal"]


def test_a_server_that_does_not_answer_is_a_timeout_then_an_errored_checkpoint(hub_root, audit):
    """A revision whose server takes longer than `hub_timeout_s` to answer is a timeout, tried `hub_retries + 1`
    times, then an errored checkpoint; the run does not hang, and the other revisions are audited."""
    slow = Fault(path=r"/api/models/.*/revision/step2$", delay=8, times=100)
    with HubServer(hub_root, faults=[slow], max_seconds=240) as hub:
        code, report, out = audit(hub.url, revisions=["step1", "step2"],
                                  settings={"hub_retries": 1, "hub_timeout_s": 1})
    assert code == 4, out
    errors = {c["name"]: c["error"] for c in report["series"][0]["checkpoints"]}
    assert errors["step1"] is None and "Timeout" in errors["step2"] and "tried 2 times" in errors["step2"]


def test_evict_leaves_no_weights_and_the_journal_keeps_the_results(hub_root, audit, tmp_path):
    """--evict deletes each revision from the HF cache once audited: no weights stay on disk, and a rerun is read
    back from memaudit's journal without downloading a single weights file."""
    with HubServer(hub_root, max_seconds=240) as hub:
        code, report, out = audit(hub.url, "--evict")
    assert code == 0, out
    assert weights_blobs(tmp_path / "hf") == []
    with HubServer(hub_root, max_seconds=240) as hub:
        code, again, out = audit(hub.url, "--evict")
    assert code == 0 and metrics(again) == metrics(report), out
    assert hub.downloads() == {} and all(c["from_journal"] for c in again["series"][0]["checkpoints"])


def test_a_branch_that_moves_is_another_checkpoint(hub_root, audit, tmp_path, tokenizer):
    """New weights pushed to a branch make a new commit: memaudit audits it as a new checkpoint (new sha, new
    results); the branches that did not move are read back from the journal."""
    with HubServer(hub_root, max_seconds=240) as hub:
        _, before, _ = audit(hub.url)
    moved = tmp_path / "moved"
    tiny_model("gpt_neox", len(tokenizer), seed=42).save_pretrained(moved)
    (hub_root / REPO / "step3" / "model.safetensors").unlink()
    shutil.copy(moved / "model.safetensors", hub_root / REPO / "step3" / "model.safetensors")
    with HubServer(hub_root, max_seconds=240) as hub:
        code, after, out = audit(hub.url)
    assert code == 0, out
    old, new = ({c["name"]: c for c in r["series"][0]["checkpoints"]} for r in (before, after))
    assert new["step3"]["sha"] != old["step3"]["sha"] and not new["step3"]["from_journal"]
    assert new["step1"]["from_journal"] and new["step1"]["sha"] == old["step1"]["sha"]
    assert list(hub.downloads().values()) == [1]  # only the moved branch's weights


def test_two_processes_sharing_one_cache_fetch_each_file_once(hub_root, audit):
    """`--processes 2` over one HF cache: huggingface_hub's file locks make each weights file one download."""
    with HubServer(hub_root, max_seconds=280) as hub:
        code, report, out = audit(hub.url, "--processes", "2")
    assert code == 0, out
    assert sorted(hub.downloads().values()) == [1, 1, 1]
    assert report["provenance"]["processes"] == 2 and all(m is not None for m in metrics(report).values())


@pytest.mark.parametrize("setting, message", [({"hub_retries": 50}, "less than or equal to 20"),
                                              ({"hub_backoff_s": -1}, "greater than or equal to 0"),
                                              ({"hub_retries": "3"}, "not text")])
def test_hub_retry_settings_are_validated(basic_config, run_cli, setting, message):
    """The retry settings are user input: out of bounds or of the wrong type is a configuration error (exit 2)."""
    code, out, err = run_cli("run", str(basic_config(run={"batch_size": 4, **setting})))
    assert code == 2 and message in " ".join(err.split()), out + err


def test_a_hub_data_set_file_is_read_as_published(hub_root, audit, tmp_path, tokenizer, corpus_text):
    """`path: hf://datasets/<repo>/<file>` downloads the file of a Hub data set repository (Hubble's gzipped passages,
    as the upstream tasks read them) and gives what the same file gives from disk; a file the repository does not
    have is a clear error (exit 4)."""
    from test_records import write_hubble_passages

    folder = hub_root / "datasets" / "test-org" / "passages" / "main"
    folder.mkdir(parents=True)
    data = write_hubble_passages(folder / "passages_nodup.jsonl.gz", tokenizer, corpus_text)
    records = {"samples": "records", "seq_len": 16, "group_by": "meta.duplicates"}
    with HubServer(hub_root, max_seconds=240) as hub:
        code, remote, out = audit(hub.url, revisions=["step1"], name="remote", datasets=[
            {"name": "train", "path": "hf://datasets/test-org/passages/passages_nodup.jsonl.gz", **records}])
        assert code == 0, out
        local_code, local, out = audit(hub.url, revisions=["step1"], name="local", cache=tmp_path / "other",
                                       datasets=[{"name": "train", "path": str(data), **records}])
        assert local_code == 0, out
        missing, _, said = audit(hub.url, revisions=["step1"], name="missing", datasets=[
            {"name": "train", "path": "hf://datasets/test-org/passages@main/nothing.jsonl", **records}])
    assert remote["series"][0]["checkpoints"][0]["results"] == local["series"][0]["checkpoints"][0]["results"]
    assert {d["name"] for d in remote["datasets"]} >= {"train[meta.duplicates=0]", "train[meta.duplicates=16]"}
    assert missing == 4 and "nothing.jsonl cannot be had" in " ".join(said.split()), said


def test_a_hub_data_set_path_of_another_form_is_refused(basic_config, run_cli):
    """An `hf://` path that names no file of a data set repository is refused by the yaml's validation (exit 2)."""
    code, out, err = run_cli("run", str(basic_config(datasets=[{"name": "train", "path": "hf://datasets/owner"}])))
    assert code == 2 and "'hf://datasets/owner' is not a Hub data set file" in " ".join(err.split()), out + err
