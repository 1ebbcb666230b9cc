"""Samples per checkpoint at scale: peak memory and samples/s of one audit as the data grows.

    python benchmarks/streaming.py [--sizes 10000 100000 1000000] [--seq-len 64]

One run per size: a Megatron-format data set (.bin/.idx, uint16 tokens) of N random sequences, one random
GPT-NeoX checkpoint of about 1M parameters, `memaudit run -k memorization --no-cache` in a child process on
the CPU; prints the child's peak RSS, the forward seconds and samples/s, and the ratio of peak RSS to the
smallest size's. At the smallest size the same tokens are also audited from JSONL (the in-memory path).
On 2 CPU cores the audit scores about 700 samples/s here, so the 1M size takes about 25 minutes.

Today the data are memory-mapped but a checkpoint's per-token products are held for the whole data set,
so peak RSS grows with N (issue 22's shard-wise scoring is what flattens it); this benchmark is the yardstick.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from memaudit.inputs.megatron import HEADER  # noqa: E402

VOCAB = 1024


def write_megatron(prefix: Path, tokens: np.ndarray) -> None:
    """(n, length) uint16 tokens as a Megatron indexed data set, one document per sequence."""
    n, length = tokens.shape
    tokens.astype(np.uint16).tofile(prefix.with_suffix(".bin"))
    sizes = np.full(n, length, dtype=np.int32)
    pointers = np.arange(n, dtype=np.int64) * length * 2
    with open(prefix.with_suffix(".idx"), "wb") as f:
        f.write(HEADER + struct.pack("<QBQQ", 1, 8, n, n + 1))
        f.write(sizes.tobytes() + pointers.tobytes() + np.arange(n + 1, dtype=np.int64).tobytes())


def make_checkpoint(folder: Path) -> None:
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from memaudit.lab.tokenizer import train_bpe
    from memaudit.lab.train import read_corpus

    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=VOCAB, hidden_size=96, num_hidden_layers=4, num_attention_heads=4,
                           intermediate_size=384, max_position_embeddings=128)
    GPTNeoXForCausalLM(config).save_pretrained(folder / "step-1")
    train_bpe([read_corpus("builtin")[:200000]], vocab_size=VOCAB).save_pretrained(folder / "step-1")


def audit(root: Path, data: Path, seq_len: int, name: str) -> dict:
    """Run the audit in a child process; its peak RSS, wall time and the report's forward seconds."""
    config = root / f"{name}.yaml"
    config.write_text(json.dumps({"series": [{"name": "s", "local": str(root / "series")}],
                                  "datasets": [{"name": "d", "path": str(data), "seq_len": seq_len}],
                                  "probes": {"memorization": {"k": 16, "m": 16}}, "select": "memorization",
                                  "run": {"device": "cpu", "batch_size": 256}}))
    child = ("import atexit, resource, runpy, sys; atexit.register(lambda: print('PEAK_KIB', "
             "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)); "
             "sys.argv = ['memaudit'] + sys.argv[1:]; runpy.run_module('memaudit', run_name='__main__')")
    t = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", child, "run", str(config), "--no-cache", "-q",
                          "--json", str(root / f"{name}.json")], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if run.returncode not in (0, 1):
        raise SystemExit(run.stderr)
    peak = next(int(line.split()[1]) for line in run.stderr.splitlines() if line.startswith("PEAK_KIB"))
    report = json.loads((root / f"{name}.json").read_text())
    forward = report["series"][0]["checkpoints"][0]["forward_s"]
    return {"peak_mib": peak / 1024, "wall_s": wall, "forward_s": forward}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--seq-len", type=int, default=64)
    args = parser.parse_args()
    sizes = sorted(args.sizes)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_checkpoint(root / "series")
        rng = np.random.default_rng(0)
        rows = []
        for n in sizes:
            tokens = rng.integers(0, VOCAB, (n, args.seq_len), dtype=np.int64)
            write_megatron(root / f"d{n}", tokens)
            result = audit(root, root / f"d{n}.bin", args.seq_len, f"megatron-{n}")
            rows.append((f"megatron {n:>9,}", n, result))
            if n == sizes[0]:
                jsonl = root / f"d{n}.jsonl"
                jsonl.write_text("".join(json.dumps({"tokens": t.tolist()}) + "\n" for t in tokens))
                rows.append((f"jsonl    {n:>9,}", n, audit(root, jsonl, args.seq_len, f"jsonl-{n}")))
    base = rows[0][2]["peak_mib"]
    print(f"{'data':20s} {'peak RSS':>10s} {'x smallest':>10s} {'forward s':>10s} {'samples/s':>10s} {'wall s':>8s}")
    for label, n, r in rows:
        print(f"{label:20s} {r['peak_mib']:>6.0f} MiB {r['peak_mib'] / base:>10.2f} {r['forward_s']:>10.2f} {n / r['forward_s']:>10,.0f} "
              f"{r['wall_s']:>8.1f}")


if __name__ == "__main__":
    main()
