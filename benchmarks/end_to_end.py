"""memaudit as users run it: whole `memaudit run` processes against a whole bare process, end to end.

    python benchmarks/end_to_end.py                # on a GPU: Pythia shapes 70m-2.8b, 64- and 2048-token samples
    python benchmarks/end_to_end.py --tiny         # seconds on a CPU (what the tests run)
    python benchmarks/end_to_end.py --sizes 14m --seq-lens 256 --samples 128   # the 2-core CPU figure

For each Pythia shape and sample length it writes a series of `--checkpoints` random-weight GPT-NeoX checkpoints
(safetensors; bf16 on a GPU, float32 on a CPU) and `--samples` samples of real text (the lab's WikiText-2 excerpt,
tokenized and tiled; half role train, half role valid), then times three whole processes over the same checkpoints
and tokens, one after the other:

- bare: import torch and transformers, then per checkpoint `from_pretrained`, a forward pass over every batch (the
  batch size memaudit chose) and the argmax of the logits, as a user would write it;
- memaudit, memorization alone: `memaudit run CONFIG -k memorization`;
- memaudit, the default probe set: `memaudit run CONFIG -k "not pos"` (every probe that runs without being named,
  but part of speech, as the GPU issue measured it).

Per checkpoint: load and forward seconds (memaudit's from its report), tokens/s, MFU on a GPU (forward FLOPs =
2 x parameters x tokens + 4 x layers x width x seq_len x tokens, against the device's dense bf16 peak); per process:
wall seconds, the seconds outside loads and forward passes, peak memory; and the ratios to bare: whole process, and
each checkpoint's forward. Every figure comes from one run on one device. It writes `--out`.json and a Markdown table
`--out`.md (device, torch, transformers, date), which the table in docs/gpus.md is (tests/test_benchmarks.py).
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
from results_file import about_run, device_name, measured, write_results

ROOT = Path(__file__).resolve().parent.parent
SHAPES = {"tiny": (64, 2, 4), "14m": (128, 6, 4), "70m": (512, 6, 8), "160m": (768, 12, 12), "410m": (1024, 24, 16),
          "1.4b": (2048, 24, 16), "2.8b": (2560, 32, 32), "6.9b": (4096, 32, 32)}  # width, layers, heads (Pythia's)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}  # dense, per GPU
PROBE_SETS = {"memorization": "memorization", "default": "not pos"}

BARE = """
import json, sys, time
t0 = time.perf_counter()
import torch
from transformers import AutoModelForCausalLM
folders, data = sys.argv[1].split(","), sys.argv[2].split(",")
batch, device, dtype = int(sys.argv[3]), sys.argv[4], sys.argv[5]
import numpy as np
tokens = np.concatenate([np.load(d) for d in data]).astype(np.int64)
out = []
with torch.inference_mode():
    for folder in folders:
        t = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)).to(device).eval()
        load = time.perf_counter() - t
        t = time.perf_counter()
        for start in range(0, len(tokens), batch):
            ids = torch.from_numpy(tokens[start:start + batch]).to(device)
            model(input_ids=ids, use_cache=False).logits.argmax(-1).cpu()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        out.append({"load_s": load, "forward_s": time.perf_counter() - t})
        del model
peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print("RESULT " + json.dumps({"checkpoints": out, "rss_mib": rss, "gpu_mib": peak}))
"""

MEMAUDIT = """
import json, sys
from memaudit.integrations.cli import main
code = main(sys.argv[1:])
import torch
peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print("RESULT " + json.dumps({"code": code, "rss_mib": rss, "gpu_mib": peak}), file=sys.stderr)
sys.exit(code)
"""


def write_series(folder: Path, size: str, vocab: int, seq_len: int, n: int, dtype: str, tokenizer) -> list[Path]:
    """`n` random-weight GPT-NeoX checkpoints of a Pythia shape, each with the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    width, layers, heads = SHAPES[size]
    config = GPTNeoXConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=4 * width, max_position_embeddings=max(seq_len, 2048), rotary_pct=0.25)
    out = []
    for i in range(n):
        torch.manual_seed(i)
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
        path = folder / f"step-{1000 * (i + 1)}"
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        out.append(path)
        del model
    return out


def write_data(folder: Path, tokenizer, n: int, seq_len: int) -> list[Path]:
    """`n` samples of `seq_len` tokens of the lab's text, tiled, as two .npy files (train, valid)."""
    from memaudit.lab.train import read_corpus

    ids = np.asarray(tokenizer(read_corpus("builtin"), add_special_tokens=False)["input_ids"], dtype=np.int32)
    need = n * seq_len
    tiled = np.concatenate([np.roll(ids, 7 * k) for k in range(-(-need // len(ids)))])[:need]  # (n * seq_len,)
    rows = tiled.reshape(n, seq_len)  # (samples, seq_len)
    paths = [folder / "train.npy", folder / "valid.npy"]
    np.save(paths[0], rows[: n // 2])
    np.save(paths[1], rows[n // 2:])
    return paths


def write_config(folder: Path, series: Path, data: list[Path], seq_len: int, device: str, dtype: str) -> Path:
    import yaml

    half = seq_len // 2
    config = {"series": [{"name": "bench", "local": str(series)}],
              "datasets": [{"name": "train", "path": str(data[0]), "seq_len": seq_len},
                           {"name": "valid", "path": str(data[1]), "role": "valid", "seq_len": seq_len}],
              "probes": {"memorization": {"k": min(32, half), "m": min(32, seq_len - half)}},
              "run": {"device": device, "dtype": dtype, "cache_dir": str(folder / "cache")}}
    path = folder / "checkpoints.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def child(code: str, args: list[str]) -> tuple[dict, float]:
    """Run one whole process; its RESULT line and its wall seconds."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("RESULT ")]
    if done.returncode not in (0, 1) or not lines:
        raise SystemExit(f"a benchmark process failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT ")), wall


def measure(size: str, seq_len: int, args, device: str, dtype: str, work: Path) -> list[dict]:
    """Bare, memorization alone and the default set over one series: a row per process."""
    from memaudit.lab.tokenizer import train_bpe
    from memaudit.lab.train import read_corpus

    vocab = 512 if size == "tiny" else 50304
    tokenizer = train_bpe([read_corpus("builtin")], min(vocab, 4096))
    folder = work / f"{size}-{seq_len}"
    folders = write_series(folder / "series", size, vocab, seq_len, args.checkpoints, dtype, tokenizer)
    data = write_data(folder, tokenizer, args.samples, seq_len)
    config = write_config(folder, folder / "series", data, seq_len, device, dtype)
    n_params = int(sum(np.prod(shape) for shape in _shapes(folders[0])))
    tokens = args.samples * seq_len
    width, layers, _ = SHAPES[size]
    flops = 2 * n_params * tokens + 4 * layers * width * seq_len * tokens
    rows = []
    for name, keyword in PROBE_SETS.items():
        report_path = folder / f"{name}.json"
        result, wall = child(MEMAUDIT, ["run", str(config), "-k", keyword, "--json", str(report_path), "-q",
                                        "--no-cache"])
        report = json.loads(report_path.read_text())
        checkpoints = [{"load_s": c["load_s"], "forward_s": c["forward_s"]} for c in report["series"][0]["checkpoints"]]
        rows.append(_row(size, seq_len, f"memaudit -k {keyword!r}", wall, checkpoints, result, tokens, flops, device,
                         report["provenance"]["batch_size"]))
    batch = rows[0]["batch"]
    result, wall = child(BARE, [",".join(map(str, folders)), ",".join(map(str, data)), str(batch), device, dtype])
    bare = _row(size, seq_len, "bare", wall, result["checkpoints"], result, tokens, flops, device, batch)
    for row in rows:
        row["ratio_wall"] = row["wall_s"] / bare["wall_s"]
        row["ratio_forward"] = [m / b for m, b in zip(row["forward_s"], bare["forward_s"])]
    return [bare, *rows]


def _shapes(folder: Path):
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "np") as f:
        return [f.get_slice(k).get_shape() for k in f.keys()]


def _row(size, seq_len, process, wall, checkpoints, result, tokens, flops, device, batch) -> dict:
    load = [c["load_s"] for c in checkpoints]
    forward = [c["forward_s"] for c in checkpoints]
    peak = next((v for k, v in PEAK_BF16.items() if k in device_name(device)), None)
    return {"size": size, "seq_len": seq_len, "process": process, "batch": batch, "wall_s": wall, "load_s": load,
            "forward_s": forward, "other_s": wall - sum(load) - sum(forward),
            "tokens_per_s": [tokens / f for f in forward],
            "mfu": [flops / f / peak for f in forward] if peak else None,
            "rss_mib": result["rss_mib"], "gpu_mib": result["gpu_mib"]}


def markdown(rows: list[dict], about: dict) -> str:
    """The results as docs/gpus.md shows them."""
    lines = [f"{measured(about)}; {about['checkpoints']} checkpoints, "
             f"{about['samples']:,} samples per checkpoint (`python benchmarks/end_to_end.py "
             f"{about['arguments']}`).", "",
             "| shape | tokens/sample | process | whole process s | x bare | forward s per checkpoint | x bare forward "
             "| outside loads and forwards s | tokens/s (last) | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['ratio_wall']:.2f}" if "ratio_wall" in r else "1"
        forward_ratio = " / ".join(f"{x:.2f}" for x in r["ratio_forward"]) if "ratio_forward" in r else "1"
        lines.append(f"| {r['size']} | {r['seq_len']} | {r['process']} | {r['wall_s']:.1f} | {ratio} | "
                     f"{' / '.join(f'{x:.2f}' for x in r['forward_s'])} | {forward_ratio} | {r['other_s']:.1f} | "
                     f"{r['tokens_per_s'][-1]:,.0f} | {r['rss_mib']:,.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model, 16 samples of 16 tokens, 2 checkpoints")
    parser.add_argument("--sizes", nargs="+", default=["70m", "160m", "410m", "1.4b", "2.8b"], choices=list(SHAPES))
    parser.add_argument("--seq-lens", nargs="+", type=int, default=[64, 2048])
    parser.add_argument("--samples", type=int, default=None, help="per checkpoint (default: 1M tokens' worth)")
    parser.add_argument("--checkpoints", type=int, default=3)
    parser.add_argument("--out", default=None,
                        help="results file stem (default benchmarks/results/end_to_end-<device>)")
    args = parser.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    dtype = "bfloat16" if device == "cuda" else "float32"
    if args.tiny:
        args.sizes, args.seq_lens, args.samples, args.checkpoints = ["tiny"], [16], args.samples or 16, 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="memaudit-e2e-") as work:
        for size in args.sizes:
            for seq_len in args.seq_lens:
                samples = args.samples or max(2, (1 << 20) // seq_len)
                run = argparse.Namespace(**{**vars(args), "samples": samples})
                for row in measure(size, seq_len, run, device, dtype, Path(work)):
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    about = about_run(device, dtype, checkpoints=args.checkpoints,
                      samples=args.samples or (1 << 20) // args.seq_lens[0])
    table = markdown(rows, about)
    print(table)
    write_results(args.out, "end_to_end", device, about, rows, table)


if __name__ == "__main__":
    main()
