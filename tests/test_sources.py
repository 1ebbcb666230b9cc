"""memaudit/inputs/sources.py: local folders, the Hub path through an offline HF cache, step names."""

import json

import pytest
from conftest import put_in_hf_cache

from memaudit.errors import SourceUnavailable
from memaudit.inputs.config import RevisionSelection, SeriesConfig
from memaudit.inputs.sources import parse_step, resolve_series, select_revisions


@pytest.mark.parametrize("name, step", [
    ("step1000", 1000), ("step-100", 100), ("stage1-step5000-tokens21B", 5000), ("step1000-tokens4B", 1000),
    ("checkpoint-300", 300), ("300", 300), ("main", None), ("final", None)])
def test_parse_step(name, step):
    assert parse_step(name) == step


def test_local_series_is_ordered_by_step(make_series):
    root = make_series(steps=(10, 2, 100))
    ckpts = resolve_series(SeriesConfig(local=root))
    assert [c.name for c in ckpts] == ["step-2", "step-10", "step-100"]
    assert len({c.sha for c in ckpts}) == 3  # different weights, different identities


def test_pickle_only_checkpoint_is_refused(tmp_path):
    folder = tmp_path / "s" / "step-1"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"\x80")
    with pytest.raises(SourceUnavailable, match="pickle"):
        resolve_series(SeriesConfig(local=tmp_path / "s"))


def test_revision_selection():
    branches = ["main", "step0", "step1", "step2", "step4", "step1000", "step2000", "step3000"]
    sel = RevisionSelection(pattern="step*", every=2, first=1)
    assert select_revisions(branches, sel) == ["step1", "step4", "step2000"]
    assert select_revisions(branches, RevisionSelection(last=2)) == ["step0", "step1", "step2"]


@pytest.fixture
def hub_series(make_series, tmp_path):
    """EleutherAI/tiny-neox with revisions step1, step2 (and main) in a private HF cache."""
    root = make_series(steps=(1, 2))
    cache = tmp_path / "hf-cache"
    shas = put_in_hf_cache(cache, "EleutherAI/tiny-neox",
                           {"step1": root / "step-1", "step2": root / "step-2", "main": root / "step-2"})
    return cache, shas


def test_hub_path_from_an_offline_cache(hub_series, text_file, write_config, run_cli, tmp_path):
    cache, shas = hub_series
    config = write_config({
        "series": [{"hub": "EleutherAI/tiny-neox", "revisions": ["step1", "step2"], "hf_cache_dir": str(cache)}],
        "datasets": [{"name": "train", "path": str(text_file), "seq_len": 16, "max_samples": 4}]})
    code, out, err = run_cli("run", config, "--json", tmp_path / "r.json")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    ckpts = report["series"][0]["checkpoints"]
    assert [(c["name"], c["sha"], c["step"]) for c in ckpts] == [("step1", shas["step1"], 1), ("step2", shas["step2"], 2)]
    assert all(c["n_forward_batches"] > 0 for c in ckpts)  # the real from_pretrained(repo, revision) ran
    assert report["series"][0]["source"] == "hub:EleutherAI/tiny-neox"


def test_hub_revision_selection_from_the_cache(hub_series):
    cache, _ = hub_series
    series = SeriesConfig(hub="EleutherAI/tiny-neox", revisions=RevisionSelection(pattern="step*"), hf_cache_dir=cache)
    assert [c.name for c in resolve_series(series)] == ["step1", "step2"]


def test_default_hf_cache_is_used(make_series, text_file, write_config, run_cli):
    import os
    from pathlib import Path

    root = make_series(steps=(5,))
    put_in_hf_cache(Path(os.environ["HF_HUB_CACHE"]), "someone/default-cache-model", {"main": root / "step-5"})
    config = write_config({"series": [{"hub": "someone/default-cache-model"}],
                           "datasets": [{"name": "d", "path": str(text_file), "seq_len": 16, "max_samples": 2}]})
    code, out, err = run_cli("run", config)
    assert code == 0, err
    assert "main" in out


def test_missing_revision_offline_is_exit_4(hub_series, text_file, write_config, run_cli):
    cache, _ = hub_series
    config = write_config({
        "series": [{"hub": "EleutherAI/tiny-neox", "revisions": ["step1", "step999"], "hf_cache_dir": str(cache)}],
        "datasets": [{"name": "train", "path": str(text_file)}]})
    code, out, err = run_cli("run", config)
    assert code == 4  # the missing revision is an errored checkpoint; step1 is audited
    said = " ".join(out.split())
    assert "ERROR" in said and "step999" in said and "HF_HUB_OFFLINE" in said and "Traceback" not in out + err
    assert "step1" in said


def test_repo_not_cached_offline_is_exit_4(text_file, write_config, run_cli, tmp_path):
    config = write_config({"series": [{"hub": "nobody/never-downloaded", "hf_cache_dir": str(tmp_path / "empty")}],
                           "datasets": [{"name": "train", "path": str(text_file)}]})
    code, _, err = run_cli("run", config)
    assert code == 4 and "not in the Hugging Face cache" in err
