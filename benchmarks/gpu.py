"""memaudit's scoring against a bare forward pass at Pythia shapes, with and without the fused head.

    python benchmarks/gpu.py                 # on a GPU: Pythia 70m, 410m, 1.4b, 6.9b shapes (those that fit),
                                             # random weights, 2048-token samples, bf16
    python benchmarks/gpu.py --tiny          # a few seconds on a CPU (what the tests run)
    python benchmarks/gpu.py --cpu-memory    # the CPU memory target: Pythia-160m shape, 8 x 2048 tokens, float32

Per size it prints tokens/s of a bare `model(input_ids).logits`, of memaudit's scoring with the full
logits (unfused) and with the fused head, each one's ratio to the bare pass, model FLOPs utilisation
(forward FLOPs = 2 x parameters x tokens + 4 x layers x width x seq_len x tokens for attention, against
the device's dense bf16 peak), peak memory, and the largest batch each fits. All figures come from one
run on one device. Needs torch and transformers only (the GPU machines' image has both).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from memaudit.engine.forward import fused_head, score  # noqa: E402

SHAPES = {"tiny": (64, 2, 4), "70m": (512, 6, 8), "160m": (768, 12, 12), "410m": (1024, 24, 16),
          "1.4b": (2048, 24, 16), "2.8b": (2560, 32, 32), "6.9b": (4096, 32, 32)}  # width, layers, heads
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}  # dense, per GPU


def build(size: str, vocab: int, seq: int, dtype, device):
    """A random-weight GPT-NeoX of a Pythia size, made directly on the device in `dtype`."""
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    width, layers, heads = SHAPES[size]
    config = GPTNeoXConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=4 * width, max_position_embeddings=seq, rotary_pct=0.25)
    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=dtype).eval()


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def bare(model, tokens: np.ndarray, device) -> None:
    """The baseline: a plain forward pass that returns every logit (what a user would write)."""
    model(input_ids=torch.from_numpy(tokens).to(device), use_cache=False).logits.sum().item()


def run(fn, device, reps: int) -> tuple[float, int]:
    """Median seconds of `fn` over `reps` runs after a warm-up, and the peak GPU memory (bytes; 0 on a CPU)."""
    fn()
    sync(device)
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() if torch.device(device).type == "cuda" else 0
    return float(np.median(times)), peak


def eager(fn):
    """`fn` with the reduction's ops run one by one (MEMAUDIT_COMPILE=0), not compiled."""
    def run_eager(*args):
        os.environ["MEMAUDIT_COMPILE"] = "0"
        try:
            return fn(*args)
        finally:
            os.environ.pop("MEMAUDIT_COMPILE")
    return run_eager


def methods(model, device):
    """The ways of going over a batch: bare forward, memaudit unfused, fused, and (on a GPU) fused with the
    reduction's ops run eagerly instead of compiled."""
    out = {"bare": lambda t: bare(model, t, device),
           "unfused": lambda t: score(model, t, set(), len(t), device, fused=False),
           "fused": lambda t: score(model, t, set(), len(t), device, fused=True)}
    if torch.device(device).type == "cuda":
        out["fused-eager"] = eager(out["fused"])
    return out


def largest_batch(fn, vocab: int, seq: int, limit: int, deadline: float) -> int | None:
    """The largest power-of-two batch (up to `limit`) that runs without out-of-memory."""
    fits, batch = None, 1
    while batch <= limit and time.time() < deadline:
        try:
            fn(np.random.default_rng(0).integers(0, vocab, size=(batch, seq)))
            fits, batch = batch, batch * 2
        except torch.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
    return fits


def flops(model, size: str, tokens: int, seq: int) -> float:
    width, layers, _ = SHAPES[size]
    return 2 * sum(p.numel() for p in model.parameters()) * tokens + 4 * layers * width * seq * tokens


def agreement(size: str, args, device) -> None:
    """Share of target positions whose argmax hit differs between float32 and bfloat16 weights (the
    reduction is float32 in both), and how close the float32 top two logits are there."""
    model = build(size, args.vocab, args.seq, torch.float32, device)
    tokens = np.random.default_rng(2).integers(0, args.vocab, size=(args.batch, args.seq))
    fp32, _ = score(model, tokens, {"ranks"}, args.batch, device)
    bf16, _ = score(model.to(torch.bfloat16), tokens, {"ranks"}, args.batch, device)
    differ = fp32["hits"] != bf16["hits"]
    print(json.dumps({"agreement": size, "positions": int(differ.size), "hits_differ": int(differ.sum()),
                      "share": float(differ.mean()), "hits_fp32": int(fp32["hits"].sum())}), flush=True)
    wanted = {"ranks", "entropy", "logp2"}
    fused, _ = score(model, tokens, wanted, args.batch, device, fused=True)
    unfused, _ = score(model, tokens, wanted, args.batch, device, fused=False)
    print(json.dumps({"fused_vs_unfused": size, "hits_equal": bool((fused["hits"] == unfused["hits"]).all()),
                      "ranks_equal": bool((fused["ranks"] == unfused["ranks"]).all()),
                      **{f"max_abs_diff_{k}": float(abs(fused[k] - unfused[k]).max())
                         for k in ("logprobs", "entropy", "logp2")}}), flush=True)
    compiled, _ = score(model, tokens, wanted, args.batch, device)
    plain, _ = eager(score)(model, tokens, wanted, args.batch, device)
    print(json.dumps({"compiled_vs_eager": size, "hits_equal": bool((compiled["hits"] == plain["hits"]).all()),
                      "ranks_equal": bool((compiled["ranks"] == plain["ranks"]).all()),
                      **{f"max_abs_diff_{k}": float(abs(compiled[k] - plain[k]).max())
                         for k in ("logprobs", "entropy", "logp2")}}), flush=True)
    del model


def bench(args) -> None:
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    dtype = getattr(torch, args.dtype)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None) if dtype == torch.bfloat16 else None
    print(f"device: {name}; dtype {args.dtype}; seq_len {args.seq}; batch {args.batch}; vocab {args.vocab}")
    print(f"torch {torch.__version__}; one run, medians of {args.reps} after a warm-up")
    deadline = time.time() + args.time_limit
    if args.agreement:
        agreement(args.agreement, args, device)
    rows = []
    for size in args.sizes.split(","):
        if time.time() > deadline:
            print(f"{size}: skipped (time limit)")
            continue
        try:
            model = build(size, args.vocab, args.seq, dtype, device)
        except torch.OutOfMemoryError:
            print(f"{size}: does not fit")
            continue
        tokens = np.random.default_rng(1).integers(0, args.vocab, size=(args.batch, args.seq))
        head = fused_head(model, torch.from_numpy(tokens[:1]).to(device))[2]
        attention = getattr(model.config, "_attn_implementation", None)
        row = {"size": size, "params": sum(p.numel() for p in model.parameters()), "head": head,
               "attention": attention}
        for method, fn in methods(model, device).items():
            try:
                seconds, memory = run(lambda: fn(tokens), device, args.reps)
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                row[method] = None
                continue
            n = tokens.size
            row[method] = {"tok_s": n / seconds, "peak_gib": memory / 2**30,
                           "mfu": flops(model, size, n, args.seq) / seconds / peak if peak else None}
        if device == "cuda" and not args.no_search:
            for method, fn in methods(model, device).items():
                if row.get(method):
                    row[method]["max_batch"] = largest_batch(fn, args.vocab, args.seq, args.max_batch, deadline)
        rows.append(row)
        print(json.dumps(row), flush=True)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    print_table(rows)


def print_table(rows) -> None:
    print("\n| size | params | method | tokens/s | ratio to bare | MFU | peak GiB | largest batch |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        for method in ("bare", "unfused", "fused", "fused-eager"):
            if method not in r:
                continue
            m = r.get(method)
            if not m:
                print(f"| {r['size']} | {r['params'] / 1e6:.0f}M | {method} | out of memory | | | | |")
                continue
            ratio = r["bare"]["tok_s"] / m["tok_s"] if r.get("bare") else float("nan")
            mfu = f"{m['mfu']:.1%}" if m.get("mfu") else "–"
            print(f"| {r['size']} | {r['params'] / 1e6:.0f}M | {method} | {m['tok_s']:,.0f} | {ratio:.3f} | {mfu} | "
                  f"{m['peak_gib']:.2f} | {m.get('max_batch', '–')} |")
    print("(ratio = memaudit seconds / bare seconds; head and attention per size in the JSON lines above)")


def one(mode: str, args) -> None:
    """One measurement in a fresh process, for the CPU memory target: prints wall seconds and peak RSS."""
    torch.set_grad_enabled(False)
    model = build(args.size, args.vocab, args.seq, torch.float32, "cpu")
    tokens = np.random.default_rng(1).integers(0, args.vocab, size=(args.batch, args.seq))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    methods(model, "cpu")[mode](tokens)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mode": mode, "seconds": seconds, "peak_mib": peak / 1024, "model_mib": before / 1024}))


def cpu_memory(args) -> None:
    """Pythia-160m shape, 8 x 2048 tokens, float32: peak memory and wall time of each mode, fresh processes."""
    logits_mib = args.batch * args.seq * args.vocab * 4 / 2**20
    out = {}
    for mode in ("bare", "unfused", "fused"):
        cmd = [sys.executable, __file__, "--one", mode, "--size", args.size, "--seq", str(args.seq),
               "--batch", str(args.batch), "--vocab", str(args.vocab)]
        out[mode] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        print(json.dumps(out[mode]), flush=True)
    target = out["bare"]["peak_mib"] - 0.8 * logits_mib
    print(f"\nlogits of the batch: {logits_mib:,.0f} MiB (float32)")
    print(f"peak RSS: bare {out['bare']['peak_mib']:,.0f} MiB, unfused {out['unfused']['peak_mib']:,.0f} MiB, "
          f"fused {out['fused']['peak_mib']:,.0f} MiB; target for fused <= {target:,.0f} MiB: "
          f"{'met' if out['fused']['peak_mib'] <= target else 'NOT met'}")
    ratio = out["fused"]["seconds"] / out["unfused"]["seconds"]
    print(f"wall: bare {out['bare']['seconds']:.1f} s, unfused {out['unfused']['seconds']:.1f} s, fused "
          f"{out['fused']['seconds']:.1f} s; fused / unfused {ratio:.3f} (target <= 1.05: "
          f"{'met' if ratio <= 1.05 else 'NOT met'})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="70m,410m,1.4b,6.9b")
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--vocab", type=int, default=50304)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--max-batch", type=int, default=256)
    p.add_argument("--time-limit", type=float, default=420, help="seconds; later sizes are skipped past it")
    p.add_argument("--no-search", action="store_true", help="skip the largest-batch search")
    p.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU, in seconds")
    p.add_argument("--agreement", metavar="SIZE", help="first measure bf16 vs float32 hit agreement at this size")
    p.add_argument("--cpu-memory", action="store_true", help="the CPU memory target (Pythia-160m shape)")
    p.add_argument("--one", choices=["bare", "unfused", "fused"], help=argparse.SUPPRESS)
    p.add_argument("--size", default="160m", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        return one(args.one, args)
    if args.cpu_memory:
        return cpu_memory(args)
    if args.tiny:
        args.sizes, args.seq, args.batch, args.vocab, args.dtype, args.reps = "tiny", 64, 2, 512, "float32", 1
    bench(args)


if __name__ == "__main__":
    main()
