"""memaudit/inputs/families.py and the Hub series features: step names, selection, suites, sizes, training-order data."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, put_in_hf_cache

from memaudit.inputs.config import RevisionSelection, SeriesConfig, parse_config
from memaudit.inputs.families import family_of, parse_checkpoint
from memaudit.inputs.sources import resolve_series, select_revisions

PYTHIA_STEPS = [0] + [2 ** i for i in range(10)] + list(range(1000, 143001, 1000))


@pytest.mark.parametrize("repo, name, step, tokens, family", [
    ("EleutherAI/pythia-70m", "step1000", 1000, 1000 * 2097152, "pythia"),
    ("EleutherAI/pythia-1.4b-deduped", "step0", 0, 0, "pythia"),
    ("EleutherAI/pythia-70m", "main", None, None, "pythia"),
    ("allenai/OLMo-7B", "step1000-tokens4B", 1000, 4 * 10**9, "olmo"),
    ("allenai/OLMo-2-1124-7B", "stage1-step5000-tokens21B", 5000, 21 * 10**9, "olmo"),
    ("google/multiberts-seed_3-step_20k", "google/multiberts-seed_3-step_20k", 20000, None, "multiberts"),
    ("someone/model", "checkpoint-300", 300, None, "generic"),
    (None, "step-12", 12, None, "generic"),
])
def test_step_and_tokens_per_family(repo, name, step, tokens, family):
    assert family_of(repo).name == family
    assert parse_checkpoint(name, repo) == (step, tokens)


def test_pythia_has_154_revisions():
    assert len(PYTHIA_STEPS) == 154


def test_multiples_of_1000_are_lesci_s_144_checkpoints():
    branches = [f"step{s}" for s in PYTHIA_STEPS] + ["main"]
    picked = select_revisions(branches, RevisionSelection(multiple_of=1000), "EleutherAI/pythia-70m")
    assert picked == [f"step{1000 * i}" for i in range(144)]
    window = select_revisions(branches, RevisionSelection(multiple_of=1000, last=95000), "EleutherAI/pythia-70m")
    assert len(window) == 96 and window[-1] == "step95000"
    for bad in (0, -1000, "1000", 1.5):
        with pytest.raises(ValueError):
            RevisionSelection(multiple_of=bad)


def test_log_spaced_selection():
    branches = [f"step{s}" for s in PYTHIA_STEPS] + ["main"]
    picked = select_revisions(branches, RevisionSelection(first=1000, log_spaced=5), "EleutherAI/pythia-70m")
    steps = [int(b[4:]) for b in picked]
    assert len(steps) == 5 and steps[0] == 1000 and steps[-1] == 143000
    ratios = [b / a for a, b in zip(steps, steps[1:])]
    assert max(ratios) / min(ratios) < 1.4  # even on a log scale, up to the 1000-step grid


@pytest.fixture
def pythia_cache(make_series):
    """pythia-70m and pythia-160m with all 154 branches in the default (offline) HF cache; step0 and
    step1 are distinct commits with identical weights, as in Pythia."""
    root = make_series(steps=(1, 2, 3))
    cache = Path(os.environ["HF_HUB_CACHE"])
    for repo in ("EleutherAI/pythia-70m", "EleutherAI/pythia-160m", "EleutherAI/pythia-70m-deduped",
                 "EleutherAI/pythia-160m-deduped"):
        put_in_hf_cache(cache, repo, {"step0": root / "step-1"})
        (root / "step-1-again").mkdir(exist_ok=True)
        for f in (root / "step-1").iterdir():
            (root / "step-1-again" / f.name).write_bytes(f.read_bytes())
        (root / "step-1-again" / "README.md").write_text("another commit")
        put_in_hf_cache(cache, repo, {"step1": root / "step-1-again"})
        put_in_hf_cache(cache, repo, {f"step{s}": root / ("step-2" if s < 100000 else "step-3")
                                      for s in PYTHIA_STEPS[2:]})
        put_in_hf_cache(cache, repo, {"main": root / "step-3"})
    return cache


def test_example_yaml_resolves_offline_and_list_shows_it(pythia_cache, run_cli):
    code, out, err = run_cli("list", REPO_ROOT / "examples" / "pythia.yaml")
    assert code == 0, err
    assert "series pythia-70m-deduped" in out and "series pythia-160m-deduped" in out
    assert out.count("@step143000") == 2 and "@step1000 " in out  # 8 log-spaced revisions per size
    assert out.count("EleutherAI/pythia-70m-deduped@") == 8


def test_duplicate_revisions_in_a_pythia_like_cache(pythia_cache):
    series = SeriesConfig(hub="EleutherAI/pythia-70m", revisions=["step0", "step1", "step2"])
    c0, c1, c2 = resolve_series(series)
    assert c0.sha != c1.sha and c0.weights_key == c1.weights_key != c2.weights_key
    assert c1.tokens == 1 * 2097152


def test_sizes_expand_into_series():
    config = parse_config({"series": [{"name": "p-{size}", "hub": "EleutherAI/pythia-{size}", "sizes": ["70m", "160m"],
                                       "revisions": ["step1"]}],
                           "datasets": [{"name": "d", "path": "x"}]})
    assert [(s.name, s.hub) for s in config.series] == [("p-70m", "EleutherAI/pythia-70m"),
                                                         ("p-160m", "EleutherAI/pythia-160m")]


def test_repo_per_checkpoint_suite(make_series):
    root = make_series(steps=(1, 2))
    cache = Path(os.environ["HF_HUB_CACHE"])
    put_in_hf_cache(cache, "google/multiberts-seed_0-step_20k", {"main": root / "step-2"})
    put_in_hf_cache(cache, "google/multiberts-seed_0-step_0k", {"main": root / "step-1"})
    series = SeriesConfig(repos=["google/multiberts-seed_0-step_20k", "google/multiberts-seed_0-step_0k"])
    ckpts = resolve_series(series)
    assert [(c.name, c.step) for c in ckpts] == [("multiberts-seed_0-step_0k", 0), ("multiberts-seed_0-step_20k", 20000)]
    assert series.display_name == "google/multiberts-seed_0"


def test_training_order_npy_with_steps(basic_config, run_cli, tmp_path, tokenizer):
    rows = np.random.default_rng(0).integers(0, len(tokenizer), size=(3, 4, 20))  # (steps, batch, length)
    np.save(tmp_path / "order.npy", rows)
    config = basic_config(datasets=[{"name": "seen", "path": str(tmp_path / "order.npy"), "seq_len": 16,
                                     "first_seen_step": 2}])
    code, out, err = run_cli("run", config, "--json", tmp_path / "r.json", "-k", "memorization")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["datasets"][0]["n_samples"] == 12
    ckpts = {c["step"]: c["results"]["memorization"]["seen"] for c in report["series"][0]["checkpoints"]}
    assert "M_update" in ckpts[2] and "M_update" in ckpts[4] and "M_update" not in ckpts[1]  # steps 2, 3, 4 seen


def test_jsonl_with_seen_at_step_must_be_complete(basic_config, run_cli, tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"tokens": [1] * 20, "seen_at_step": 3}) + "\n" +
                                      json.dumps({"tokens": [2] * 20}) + "\n")
    code, _, err = run_cli("run", basic_config(datasets=[{"name": "d", "path": str(tmp_path / "d.jsonl"),
                                                          "seq_len": 16}]))
    assert code == 2 and "some records" in err


def test_a_hubble_minimal_pair_from_an_offline_cache(tokenizer, write_config, run_cli, tmp_path):
    """Hubble's layout: Llama-architecture `perturbed` and `standard` repos with revision branches by step
    (step0, step48000), audited offline as a minimal pair, grouped by the inserted samples' duplicate count."""
    import json

    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from memaudit.inputs.families import family_of, parse_checkpoint

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    cache = Path(os.environ["HF_HUB_CACHE"])
    for i, variant in enumerate(("perturbed", "standard")):
        folders = {}
        for j, step in enumerate((0, 48000)):
            torch.manual_seed(10 * i + j)
            folder = tmp_path / variant / f"step{step}"
            LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=64)).save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            folders[f"step{step}"] = folder
        put_in_hf_cache(cache, f"allegrolab/hubble-1b-100b_toks-{variant}-hf", folders)
    assert family_of("allegrolab/hubble-1b-100b_toks-perturbed-hf").name == "hubble"
    assert parse_checkpoint("step48000", "allegrolab/hubble-1b-100b_toks-perturbed-hf")[0] == 48000
    rng = np.random.default_rng(0)
    pq.write_table(pa.table({"input_ids": rng.integers(0, len(tokenizer), (16, 24)).tolist(),
                             "duplicates": [0, 1, 4, 16] * 4}), tmp_path / "passages.parquet")
    config = write_config({
        "series": [{"name": "perturbed", "hub": "allegrolab/hubble-1b-100b_toks-perturbed-hf",
                    "revisions": ["step0", "step48000"], "reference": "standard"},
                   {"name": "standard", "hub": "allegrolab/hubble-1b-100b_toks-standard-hf",
                    "revisions": ["step0", "step48000"]}],
        "datasets": [{"name": "gutenberg", "path": str(tmp_path / "passages.parquet"), "seq_len": 24,
                      "group_by": "duplicates"}],
        "probes": {"memorization": {"k": 8, "m": 8}, "twin": {}}, "run": {"batch_size": 4}}, name="hubble.yaml")
    code, out, err = run_cli("run", config, "-k", "memorization or twin", "--json", tmp_path / "r.json")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    perturbed = report["series"][0]
    assert perturbed["family"] == "hubble" and [c["step"] for c in perturbed["checkpoints"]] == [0, 48000]
    twin = perturbed["results"]["twin"]
    assert {f"gutenberg[duplicates={d}]" for d in (0, 1, 4, 16)} <= set(twin)
    assert twin["gutenberg"]["steps"] == twin["gutenberg"]["twin_steps"] == [0, 48000]
