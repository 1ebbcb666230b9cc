"""Audit speed against its physical floor and against generate-based extraction.

    python benchmarks/audit_speed.py [--sizes 1M,10M,40M] [--device cpu|cuda] [--series-size 10M]

Every figure is a ratio measured in this run, on random GPT-NeoX models (one trained briefly for
the extraction check), with the same tokens and batch size on both sides:

1. scoring one checkpoint (memaudit's pass with on-device reduction) / a bare `model(input_ids)` pass;
   whole `memaudit run` of that checkpoint / (bare load + bare pass);
2. one-pass k-extractability (32 + 32) vs `generate` greedy decoding: identical verdicts, speed-up;
3. products cache: forward batches of a second run that adds a probe (counted, not timed);
4. a series of N checkpoints: wall time vs sum of load and pass times (the next model loads in the
   background), and peak RSS for 2 vs 10 checkpoints;
5. tokens/s of the whole audit per model size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

SIZES = {  # name: (vocab, hidden, layers, heads)
    "1M": (4096, 96, 2, 4),
    "10M": (8192, 256, 6, 4),
    "40M": (16384, 512, 8, 8),
    "pythia-70m": (50304, 512, 6, 8),
    "pythia-160m": (50304, 768, 12, 12),
}
SEQ_LEN, N_SAMPLES, BATCH = 128, 32, 8


def make_model(size: str, seed: int = 0):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    vocab, hidden, layers, heads = SIZES[size]
    torch.manual_seed(seed)
    config = GPTNeoXConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=4 * hidden, max_position_embeddings=2048)
    return GPTNeoXForCausalLM(config).eval()


def make_tokenizer(vocab: int):
    from memaudit.lab.tokenizer import train_bpe
    from memaudit.lab.train import read_corpus

    return train_bpe([read_corpus("builtin")], vocab)


def write_series(root: Path, size: str, n: int, tokenizer) -> Path:
    for i in range(n):
        folder = root / f"step-{i + 1}"
        make_model(size, seed=i).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return root


def write_data(path: Path, vocab: int, n: int = N_SAMPLES, seq_len: int = SEQ_LEN, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, vocab, size=(n, seq_len)).tolist()
    path.write_text("".join(json.dumps({"id": f"s:{i}", "tokens": r}) + "\n" for i, r in enumerate(rows)))
    return path


def write_config(folder: Path, series: Path, data: Path, device: str, select: str = "memorization") -> Path:
    config = {"series": [{"name": "bench", "local": str(series)}],
              "datasets": [{"name": "d", "path": str(data), "seq_len": SEQ_LEN}],
              "select": select, "probes": {"memorization": {"k": 32, "m": 32}},
              "run": {"batch_size": BATCH, "device": device, "cache_dir": str(folder / "cache")}}
    path = folder / f"config-{abs(hash(select))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def audit(config: Path, use_cache: bool = False):
    from memaudit.engine.plan import RunOptions, make_plan
    from memaudit.engine.run import run_audit
    from memaudit.inputs.config import load_config

    cfg, digest = load_config(config)
    t = time.perf_counter()
    report = run_audit(make_plan(cfg), digest, RunOptions(use_cache=use_cache))
    return report, time.perf_counter() - t


def bare_pass(model, tokens: np.ndarray, device) -> float:
    t = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(tokens), BATCH):
            model(input_ids=torch.from_numpy(tokens[start:start + BATCH]).to(device)).logits
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def best_of(fn, repeats: int = 3) -> float:
    return min(fn() for _ in range(repeats))


def floor_ratio(size: str, work: Path, device) -> dict:
    from memaudit.engine.forward import score
    from memaudit.inputs.sources import Checkpoint, load_model

    vocab = SIZES[size][0]
    tok = make_tokenizer(min(vocab, 4096))
    folder = work / size
    series = write_series(folder / "series", size, 1, tok)
    data = write_data(folder / "d.jsonl", len(tok))
    tokens = np.array([json.loads(line)["tokens"] for line in data.read_text().splitlines()])
    ckpt = Checkpoint(series="bench", name="step-1", step=1, location=str(series / "step-1"), sha="x",
                      path=series / "step-1")
    t = time.perf_counter()
    model = load_model(ckpt, "float32", device)
    load = time.perf_counter() - t
    bare_pass(model, tokens, device)  # warm-up
    bare = best_of(lambda: bare_pass(model, tokens, device))
    scored = best_of(lambda: _timed(lambda: score(model, tokens, set(), BATCH, device)))
    config = write_config(folder, series, data, str(device))
    audit(config)  # warm-up (imports, first load)
    report, wall = min((audit(config) for _ in range(3)), key=lambda r: r[1])
    n_params = sum(p.numel() for p in model.parameters())
    return {"size": size, "params": n_params, "tokens": int(tokens.size), "bare_s": bare, "score_s": scored,
            "score_ratio": scored / bare, "audit_s": wall, "audit_ratio": wall / (load + bare),
            "audit_tok_s": tokens.size / wall, "bare_tok_s": tokens.size / bare}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def extraction(size: str, device, train_steps: int = 0) -> dict:
    """One-pass verdicts vs `generate` on 32 samples of 64 tokens; with `train_steps`, the model first
    learns half of them by heart so that both verdicts occur."""
    from memaudit.measures import extractable_samples

    from memaudit.engine.forward import score

    k = m = 32
    model = make_model(size).to(device)
    tokens = np.random.default_rng(1).integers(1, SIZES[size][0], size=(32, 64))
    if train_steps:
        memorize = torch.from_numpy(tokens[:16]).to(device)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        for _ in range(train_steps):
            loss = model(input_ids=memorize, labels=memorize).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
    model.generation_config.eos_token_id = None

    def one_pass():
        products, _ = score(model, tokens, set(), BATCH, device)
        return extractable_samples(products["hits"], k, m)[0]

    def generate():
        out = []
        with torch.inference_mode():
            for start in range(0, len(tokens), BATCH):
                prefix = torch.from_numpy(tokens[start:start + BATCH, :k]).to(device)
                gen = model.generate(prefix, max_new_tokens=m, min_new_tokens=m, do_sample=False, pad_token_id=0)
                out += (gen[:, k:].cpu().numpy() == tokens[start:start + BATCH, k:k + m]).all(axis=1).tolist()
        return np.array(out)

    one_pass(), generate()  # warm-up
    t1 = best_of(lambda: _timed(one_pass))
    t2 = best_of(lambda: _timed(generate))
    a, b = one_pass(), generate()
    return {"size": size, "samples": len(tokens), "extractable": int(a.sum()), "identical": int((a == b).sum()),
            "one_pass_s": t1, "generate_s": t2, "speedup": t2 / t1}


def cache_reuse(work: Path, device) -> dict:
    tok = make_tokenizer(4096)
    folder = work / "cache-check"
    series = write_series(folder / "series", "1M", 2, tok)
    data = write_data(folder / "d.jsonl", len(tok))
    first, _ = audit(write_config(folder, series, data, str(device), "memorization"), use_cache=True)
    second, _ = audit(write_config(folder, series, data, str(device), "memorization or identifiers"), use_cache=True)
    count = lambda r: sum(c.n_forward_batches for s in r.series for c in s.checkpoints)  # noqa: E731
    return {"first_run_batches": count(first), "second_run_batches": count(second),
            "second_run_probes": [p.name for p in second.probes]}


RSS_CHILD = """
import resource, sys, json, time
from memaudit.inputs.config import load_config
from memaudit.engine.plan import RunOptions, make_plan
from memaudit.engine.run import run_audit
from memaudit.results.events import CheckpointFinished, CheckpointStarted
marks = {}
def on_event(event):
    if isinstance(event, CheckpointStarted):
        marks.setdefault("checkpoint", time.perf_counter())
    elif isinstance(event, CheckpointFinished):
        marks["checkpoint_done"] = time.perf_counter()
cfg, digest = load_config(sys.argv[1])
report = run_audit(make_plan(cfg), digest, RunOptions(use_cache=False), on_event=on_event)
c = report.series[0].checkpoints
print(json.dumps({"wall": report.provenance.duration_s, "loop": marks["checkpoint_done"] - marks["checkpoint"],
                  "load": sum(x.load_s for x in c), "forward": sum(x.forward_s for x in c), "n": len(c),
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def series_overlap(size: str, work: Path, device, counts=(2, 10)) -> list[dict]:
    tok = make_tokenizer(4096)
    folder = work / f"series-{size}"
    full = write_series(folder / "series", size, max(counts), tok)
    data = write_data(folder / "d.jsonl", len(tok))
    out = []
    for n in counts:
        sub = folder / f"first-{n}"
        sub.mkdir()
        for i in range(n):
            (sub / f"step-{i + 1}").symlink_to(full / f"step-{i + 1}")
        config = write_config(folder, sub, data, str(device))
        result = subprocess.run([sys.executable, "-c", RSS_CHILD, str(config)], capture_output=True, text=True,
                                check=True)
        out.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1M,10M,40M")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--series-size", default="10M")
    args = parser.parse_args()
    device = torch.device(args.device)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    print(f"device {device} · torch {torch.__version__} · {torch.get_num_threads()} threads · "
          f"{N_SAMPLES} samples x {SEQ_LEN} tokens · batch {BATCH}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("\n1. floor: memaudit scoring / bare forward pass, same tokens and batches (goal <= 1.10)")
        for size in args.sizes.split(","):
            r = floor_ratio(size, work, device)
            print(f"  {size:>11} ({r['params'] / 1e6:.1f}M params): bare {r['bare_s']:.3f} s, scoring "
                  f"{r['score_s']:.3f} s -> ratio {r['score_ratio']:.3f}; whole audit {r['audit_s']:.3f} s = "
                  f"{r['audit_ratio']:.2f} x (load + bare pass); audit {r['audit_tok_s']:,.0f} tok/s "
                  f"(bare pass {r['bare_tok_s']:,.0f} tok/s)")
        print("\n2. k-extractability 32/32, one pass vs generate greedy decoding, 32 samples x 64 tokens (goal >= 10x)")
        runs = [extraction("1M", device, train_steps=300)] + [extraction(s, device) for s in args.sizes.split(",")]
        for e, label in zip(runs, ["1M, trained on half"] + ["random " + s for s in args.sizes.split(",")]):
            print(f"  {label:>20}: {e['extractable']:>2} extractable, verdicts identical on {e['identical']}/"
                  f"{e['samples']}; one pass {e['one_pass_s']:.3f} s vs generate {e['generate_s']:.3f} s -> "
                  f"speed-up {e['speedup']:.1f}x")
        print("  inside an audit the verdict costs no pass of its own: it is read off the M pass's hits")
        c = cache_reuse(work, device)
        print(f"\n3. products cache: first run {c['first_run_batches']} forward batches; second run adding "
              f"{c['second_run_probes'][1:]} -> {c['second_run_batches']} forward batches")
        print(f"\n4. series of {args.series_size} checkpoints (next model loaded in the background):")
        for r in series_overlap(args.series_size, work, device):
            print(f"  N={r['n']:>2}: checkpoint loop {r['loop']:.2f} s vs load {r['load']:.2f} s + pass "
                  f"{r['forward']:.2f} s = {r['load'] + r['forward']:.2f} s (overlap ratio "
                  f"{r['loop'] / (r['load'] + r['forward']):.2f}); whole run {r['wall']:.2f} s; peak RSS {r['rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
