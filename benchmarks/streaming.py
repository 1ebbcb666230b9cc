"""Samples per checkpoint at scale: peak memory and samples/s of one audit as the data grows.

    python benchmarks/streaming.py [--sizes 10000 100000 1000000] [--seq-len 64] [--resume N] [--processes-check N]
                                   [--shard-size 16384] [--repeats 3] [--device cpu]

One run per size: a Megatron-format data set (.bin/.idx, uint16 tokens) of N random sequences, one random
GPT-NeoX checkpoint of about 1M parameters, `memaudit run -k memorization --no-cache --samples-out DIR` in a
child process on the CPU; prints the child's peak RSS (its VmHWM), the forward seconds and samples/s, and the
ratio of peak RSS to the smallest size's. At the smallest size the same tokens are also audited from JSONL.
On 2 CPU cores the audit scores 600-700 samples/s here, so the 1M size takes about 27 minutes.

Data sets are scored in shards of `run.shard_size` samples (16,384 here, the default), each reduced to per-sample
columns and dropped, so peak RSS stays nearly flat as N grows. Each size's run writes `--samples-out` (the
full job) and is the reference the checks below compare with at that size. At the smallest size the same samples are
also audited as one shard (the in-memory path) and in shards of 1,024, alternately `--repeats` times
(the fastest of each is shown: runs on a shared 2-core machine vary by 10-20%; results compared), and
from JSONL. `--resume N` kills a run of N samples with kill -9 halfway and runs it again (shards resumed,
Parquet compared with an uninterrupted run's); `--processes-check N` compares 2 processes with 1.
"""

from __future__ import annotations

import argparse
import json
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
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


DEVICE = "cpu"  # --device


def peak_kib() -> int:
    """This process's peak resident memory in KiB: VmHWM, the high-water mark of its own address space, where
    Linux has it. Not ru_maxrss: a child started by subprocess (vfork, then exec) inherits the parent's
    high-water mark in ru_maxrss, so a parent holding a large array would set every child's figure."""
    import resource

    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def audit(root: Path, data: Path, seq_len: int, name: str, shard_size: int = 16384, extra: tuple = (),
          cache: Path | None = None, kill_after_shards: int | None = None) -> dict:
    """Run the audit in a child process; its peak RSS, wall time and the report's forward seconds. With `cache`
    the shard journal is on (else --no-cache); `kill_after_shards`: kill -9 the child once that many shards
    are journaled (returns None)."""
    config = root / f"{name}.yaml"
    config.write_text(json.dumps({"series": [{"name": "s", "local": str(root / "series")}],
                                  "datasets": [{"name": "d", "path": str(data), "seq_len": seq_len}],
                                  "probes": {"memorization": {"k": 16, "m": 16}}, "select": "memorization",
                                  "run": {"device": DEVICE, "batch_size": 256, "shard_size": shard_size,
                                          "cache_dir": str(cache or root / "unused-cache")}}))
    child = (f"import atexit, runpy, sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.streaming import peak_kib; "
             "atexit.register(lambda: print('PEAK_KIB', peak_kib(), file=sys.stderr)); "
             "sys.argv = ['memaudit'] + sys.argv[1:]; runpy.run_module('memaudit', run_name='__main__')")
    command = [sys.executable, "-c", child, "run", str(config), "-q", "--json", str(root / f"{name}.json"), *extra]
    if cache is None:
        command.append("--no-cache")
    t = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if kill_after_shards is not None:
        while len(list((cache / "shards").rglob("*.npz"))) < kill_after_shards and proc.poll() is None:
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return None
    _, stderr = proc.communicate()
    wall = time.perf_counter() - t
    if proc.returncode not in (0, 1):
        raise SystemExit(stderr)
    peaks = [int(line.split()[1]) for line in stderr.splitlines() if line.startswith("PEAK_KIB")]
    report = json.loads((root / f"{name}.json").read_text())
    checkpoint = report["series"][0]["checkpoints"][0]
    return {"peak_mib": peaks[0] / 1024 if peaks else float("nan"), "wall_s": wall,
            "forward_s": checkpoint["forward_s"], "results": checkpoint["results"],
            "batches": checkpoint["n_forward_batches"]}


def parquet_of(folder: Path):
    """The one Parquet file under `folder`, as an Arrow table."""
    import pyarrow.parquet as pq

    (path,) = sorted(folder.rglob("*.parquet"))
    return pq.read_table(path)


def largest_difference(a, b) -> float:
    """The largest absolute difference between two results (nested dicts and lists of numbers) or two Arrow
    tables' numeric columns; inf where their shapes or other values differ."""
    if hasattr(a, "column_names"):
        if a.column_names != b.column_names or a.num_rows != b.num_rows:
            return float("inf")
        return largest_difference({c: a.column(c).to_pylist() for c in a.column_names},
                                  {c: b.column(c).to_pylist() for c in b.column_names})
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return max((largest_difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return max((largest_difference(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b))
    return 0.0 if a == b else float("inf")


REFERENCES: dict[int, dict] = {}  # size -> its one-process, uninterrupted run (Parquet in out-<size>)


def uninterrupted(root: Path, data: Path, seq_len: int, n: int, shard_size: int) -> dict:
    """The one-process, uninterrupted run of `data` with --samples-out that the checks compare with: the
    measured run of that size when there was one, else a new one (run once for both checks)."""
    if n not in REFERENCES:
        REFERENCES[n] = audit(root, data, seq_len, f"megatron-{n}", shard_size,
                              ("--samples-out", str(root / f"out-{n}")))
    return REFERENCES[n]


def resume_check(root: Path, data: Path, seq_len: int, n: int, shard_size: int) -> None:
    """kill -9 in the middle of a run, run again: shards resumed, Parquet equal to an uninterrupted run's."""
    shards = -(-n // shard_size)
    whole = uninterrupted(root, data, seq_len, n, shard_size)
    audit(root, data, seq_len, "killed", shard_size, ("--samples-out", str(root / "out-killed")),
          cache=root / "cache-killed", kill_after_shards=shards // 2)
    journaled = len(list((root / "cache-killed" / "shards").rglob("*.npz")))
    resumed = audit(root, data, seq_len, "resumed", shard_size, ("--samples-out", str(root / "out-killed")),
                    cache=root / "cache-killed")
    a, b = parquet_of(root / f"out-{n}"), parquet_of(root / "out-killed")
    print(f"kill -9 at {journaled} of {shards} shards ({n:,} samples): the rerun ran {resumed['batches']} of "
          f"{whole['batches']} batches; results equal: {resumed['results'] == whole['results']}; Parquet equal: "
          f"{a.equals(b)} (largest difference: results {largest_difference(resumed['results'], whole['results']):.2g}, "
          f"Parquet {largest_difference(a, b):.2g})", flush=True)


def processes_check(root: Path, data: Path, seq_len: int, n: int, shard_size: int) -> None:
    """One checkpoint, two processes splitting its shards: the same results and Parquet rows as one process."""
    one = uninterrupted(root, data, seq_len, n, shard_size)
    two = audit(root, data, seq_len, "two", shard_size, ("--samples-out", str(root / "out-two"), "--processes", "2"))
    a, b = parquet_of(root / f"out-{n}"), parquet_of(root / "out-two")
    print(f"2 processes vs 1 ({n:,} samples, {-(-n // shard_size)} shards): results equal: "
          f"{one['results'] == two['results']}; Parquet equal: {a.equals(b)} (largest difference: results "
          f"{largest_difference(one['results'], two['results']):.2g}, Parquet {largest_difference(a, b):.2g}); "
          f"wall {two['wall_s']:.1f} s vs {one['wall_s']:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--resume", type=int, metavar="N", help="also: kill -9 / resume check at N samples")
    parser.add_argument("--processes-check", type=int, metavar="N", help="also: 2 processes vs 1 at N samples")
    parser.add_argument("--shard-size", type=int, default=16384, help="of the measured runs and the checks")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind in the shard-size comparison")
    parser.add_argument("--device", default="cpu", help="cpu (the targets' setting) or cuda")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    sizes = sorted(args.sizes)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_checkpoint(root / "series")
        rng = np.random.default_rng(0)
        rows = []

        def measured(label, n, result):  # printed as it comes: the 1M size takes a while
            rows.append((label, n, result))
            base = rows[0][2]["peak_mib"]
            print(f"{label:20s} {result['peak_mib']:>6.0f} MiB {result['peak_mib'] / base:>10.2f} "
                  f"{result['forward_s']:>10.2f} {n / result['forward_s']:>10,.0f} {result['wall_s']:>8.1f}", flush=True)

        print(f"{'data':20s} {'peak RSS':>10s} {'x smallest':>10s} {'forward s':>10s} {'samples/s':>10s} {'wall s':>8s}")
        for n in sizes:
            tokens = rng.integers(0, VOCAB, (n, args.seq_len), dtype=np.uint16)
            write_megatron(root / f"d{n}", tokens)
            reference = uninterrupted(root, root / f"d{n}.bin", args.seq_len, n, args.shard_size)
            measured(f"megatron {n:>9,}", n, reference)
            if n == sizes[0]:  # the same samples in one shard (the in-memory path) and in shards of 1024,
                runs = {"one": [], "small": []}  # alternated, the fastest of each kept (this machine's noise)
                for _ in range(args.repeats):
                    for kind, size in (("one", n), ("small", 1024)):
                        runs[kind].append(audit(root, root / f"d{n}.bin", args.seq_len, f"{kind}-{n}", shard_size=size))
                measured(f"  one shard {n:>7,}", n, min(runs["one"], key=lambda r: r["forward_s"]))
                measured("  shards of 1024", n, min(runs["small"], key=lambda r: r["forward_s"]))
                jsonl = root / f"d{n}.jsonl"
                jsonl.write_text("".join(json.dumps({"tokens": t.tolist()}) + "\n" for t in tokens))
                measured(f"jsonl    {n:>9,}", n, audit(root, jsonl, args.seq_len, f"jsonl-{n}"))
        for n, check in ((args.resume, resume_check), (args.processes_check, processes_check)):
            if n:
                if not (root / f"d{n}.bin").exists():
                    write_megatron(root / f"d{n}", rng.integers(0, VOCAB, (n, args.seq_len), dtype=np.uint16))
                check(root, root / f"d{n}.bin", args.seq_len, n, args.shard_size)
    largest = [r for label, n, r in rows if n == sizes[-1] and label.startswith("megatron")][0]
    middle = [r for label, n, r in rows if label.startswith("megatron") and n * 10 == sizes[-1]]
    if middle:
        print(f"peak RSS {sizes[-1]:,} / {sizes[-1] // 10:,} samples: {largest['peak_mib'] / middle[0]['peak_mib']:.3f}")
    one, small = rows[1][2], rows[2][2]
    print(f"samples/s in shards of 1024 / one shard at {sizes[0]:,}: {one['forward_s'] / small['forward_s']:.3f}; "
          f"results equal: {one['results'] == small['results']}")


if __name__ == "__main__":
    main()
