"""Fixtures: tiny random GPT-NeoX / GPT-2 checkpoints, a BPE tokenizer, an offline HF cache.

Nothing here touches the network: HF_HUB_OFFLINE is set before huggingface_hub is imported.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

_HF_HOME = tempfile.mkdtemp(prefix="memaudit-test-hf-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_CACHE"] = str(Path(_HF_HOME) / "hub")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["NO_COLOR"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

import pytest  # noqa: E402
import yaml  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS = REPO_ROOT / "memaudit" / "lab" / "corpus" / "wikitext2_excerpt.txt"
WIKITEXT = REPO_ROOT.parent / "shared" / "data" / "wikitext-2" / "valid.txt"


@pytest.fixture(autouse=True)
def _isolated_products_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMAUDIT_CACHE", str(tmp_path / "memaudit-cache"))


@pytest.fixture(scope="session")
def corpus_text() -> str:
    return CORPUS.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def tokenizer(corpus_text):
    from memaudit.lab.tokenizer import train_bpe

    return train_bpe([corpus_text], vocab_size=400)


def tiny_model(arch: str, vocab_size: int, seed: int, context: int = 128):
    """A random causal LM with a few thousand parameters."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoXConfig

    if arch == "gpt_neox":
        config = GPTNeoXConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=context)
    elif arch == "gpt2":
        config = GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=context)
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


def random_tokens(vocab: int, n: int = 7, seq_len: int = 24, seed: int = 0):
    """(n, seq_len) int64 token ids drawn uniformly from the vocabulary."""
    import numpy as np

    return np.random.default_rng(seed).integers(0, vocab, size=(n, seq_len), dtype=np.int64)


@pytest.fixture
def make_series(tmp_path, tokenizer):
    """Write a local series: `folder/step-N/` HF checkpoints sharing the tokenizer."""

    def make(name="series", steps=(1, 2, 4), arch="gpt_neox", tok=None) -> Path:
        root = tmp_path / name
        for i, step in enumerate(steps):
            model = tiny_model(arch, len(tok or tokenizer), seed=i)
            model.save_pretrained(root / f"step-{step}")
            (tok or tokenizer).save_pretrained(root / f"step-{step}")
        return root

    return make


@pytest.fixture
def text_file(tmp_path, corpus_text) -> Path:
    path = tmp_path / "data" / "train.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(corpus_text[:6000], encoding="utf-8")
    return path


@pytest.fixture
def write_config(tmp_path):
    """Write a yaml from a dict (or a raw string) and return its path."""

    def write(content, name="checkpoints.yaml") -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
        return path

    return write


@pytest.fixture
def basic_config(make_series, text_file, write_config):
    """A local three-checkpoint series with one data set."""

    def build(**overrides) -> Path:
        config = {
            "series": [{"name": "tiny", "local": str(make_series())}],
            "datasets": [{"name": "train", "path": str(text_file), "seq_len": 32, "max_samples": 12}],
            "run": {"batch_size": 4},
        }
        config.update(overrides)
        return write_config(config)

    return build


def put_in_hf_cache(cache_dir: Path, repo: str, revisions: dict[str, Path]) -> dict[str, str]:
    """Lay checkpoint folders out as the Hugging Face cache does: refs/<rev> holds a commit sha,
    snapshots/<sha>/<file> links to blobs/<sha256 of the content>."""
    repo_dir = Path(cache_dir) / ("models--" + repo.replace("/", "--"))
    shas = {}
    for revision, folder in revisions.items():
        sha = hashlib.sha1(f"{repo}@{folder}".encode()).hexdigest()
        snapshot = repo_dir / "snapshots" / sha
        for file in sorted(folder.iterdir()):
            data = file.read_bytes()
            blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            if not blob.exists():
                blob.write_bytes(data)
            snapshot.mkdir(parents=True, exist_ok=True)
            if not (snapshot / file.name).exists():
                (snapshot / file.name).symlink_to(Path("../..") / "blobs" / blob.name)
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / revision).write_text(sha)
        shas[revision] = sha
    return shas


def hand_report(values: dict | None = None, series: str = "s", dataset: str = "private", metric: str = "M"):
    """An AuditReport built by hand: one series whose checkpoints (`name -> value`; a `step-N` name gives step N)
    carry memorization's `metric` on `dataset`."""
    from memaudit.results.schema import AuditReport, CheckpointResult, ProbeInfo, Provenance, SeriesResult

    values = {"step-0": 0.1, "step-2": 0.2} if values is None else values
    ckpts = [CheckpointResult(name=name, step=int(name.split("-")[-1]) if name.startswith("step-") else i,
                              location="-", results={"memorization": {dataset: {metric: value}}})
             for i, (name, value) in enumerate(values.items())]
    provenance = Provenance(memaudit_version="0", python_version="3", platform="x", dtype="float32", batch_size=1,
                            seed=0, config_hash="h", command="c", started_at="t")
    probe = ProbeInfo(name="memorization", kind="checkpoint", source="-", products=[], params={}, show=[metric])
    return AuditReport(status="passed", exit_code=0, provenance=provenance, probes=[probe],
                       series=[SeriesResult(name=series, source="-", tokenizer="t", checkpoints=ckpts)])


@pytest.fixture
def run_cli(capsys):
    """Run `memaudit ARGS` in-process; return (exit code, stdout, stderr)."""
    from memaudit.integrations.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


SMALL_LAB = {
    "vocab_size": 300, "seq_len": 40, "n_samples": 12, "n_valid": 8, "n_special": 4, "batch_size": 4,
    "epochs": 4, "lr": 0.01, "save_every": 2, "canaries": {"file": "builtin", "copies": 2},
    "runs": [{"name": "base", "layers": 1, "width": 16, "heads": 2, "special": {"epoch": 2, "repeats": 1}},
             {"name": "ids", "layers": 1, "width": 16, "heads": 2, "ids": "prefix"}],
}
"""A lab with every kind of data set (train, valid, special, canaries) and two runs: seconds to train."""


@pytest.fixture(scope="session")
def small_lab(tmp_path_factory) -> Path:
    """SMALL_LAB trained once per session; returns its folder (with checkpoints.yaml)."""
    from memaudit.lab.config import parse_lab_config
    from memaudit.lab.train import run_lab

    root = tmp_path_factory.mktemp("small-lab")
    return run_lab(parse_lab_config({**SMALL_LAB, "out": str(root / "lab")}, root))


pytest_plugins = ["pytester"]
