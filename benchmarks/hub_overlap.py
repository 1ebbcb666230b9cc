"""A series audited from a Hub server on the loopback, throttled to a set bandwidth: are downloads hidden behind
scoring, and does `--evict` keep the disk at about two checkpoints?

Serves `--revisions` distinct random GPT-NeoX checkpoints as branches step1..stepN (memaudit.lab.hub_server, the
real huggingface_hub client through HF_ENDPOINT), throttled to `--mbps` megabytes per second, and audits them in
this process with `--evict` while a thread samples the size of the HF cache. From the report: the time to download
and load each checkpoint (`load_s`, in the background while the previous one is scored), the time the audit waited
for it (`wait_s`), the forward time (`forward_s`). Prints the run's wall time (first checkpoint started to last
finished) against max(total download, total scoring) and against their sum, and the peak disk in checkpoints, at
three bandwidths: twice, once and half the one at which a checkpoint downloads in the time one is scored (scoring
dominates, balanced, download dominates).

    python benchmarks/hub_overlap.py                    # 50 revisions, the three bandwidths
    python benchmarks/hub_overlap.py --tiny             # seconds (the test suite runs this)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under `folder` (symlinks not followed: the HF cache's snapshots point at blobs)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            try:
                if not os.path.islink(path):
                    total += os.path.getsize(path)
            except OSError:
                pass  # deleted while walking (eviction)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="4 small revisions: seconds (the test suite runs this)")
    parser.add_argument("--revisions", type=int, default=50)
    parser.add_argument("--width", type=int, default=256, help="hidden size of the checkpoints (their weight size)")
    parser.add_argument("--samples", type=int, default=256, help="samples of 128 tokens scored per checkpoint")
    parser.add_argument("--mbps", type=float, default=None, help="bandwidth in MB/s (default: download ~ scoring)")
    parser.add_argument("--out", type=Path, default=None, help="write <out>.json and <out>.md (a results table)")
    args = parser.parse_args()
    if args.tiny:
        args.revisions, args.width, args.samples = 4, 32, 16
    work = Path(tempfile.mkdtemp(prefix="memaudit-hub-bench-"))
    from memaudit.lab.hub_server import (
        HubServer,  # the standard library only: started before huggingface_hub loads
    )

    hub = HubServer(work / "hub", max_seconds=7200).start()  # serves the folder as it is filled below
    os.environ.update({"HF_ENDPOINT": hub.url, "HF_HOME": str(work / "hf"), "HF_HUB_CACHE": str(work / "hf" / "hub"),
                       "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                       "MEMAUDIT_CACHE": str(work / "memaudit"), "TOKENIZERS_PARALLELISM": "false"})
    import numpy as np
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from memaudit.lab.tokenizer import train_bpe

    corpus = (Path(__file__).resolve().parent.parent / "memaudit/lab/corpus/wikitext2_excerpt.txt").read_text()
    tokenizer = train_bpe([corpus], vocab_size=2048)
    repo = work / "hub" / "bench-org" / "series"
    for step in range(1, args.revisions + 1):
        torch.manual_seed(step)
        model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=args.width,
                                                 num_hidden_layers=4, num_attention_heads=4,
                                                 intermediate_size=4 * args.width, max_position_embeddings=256))
        model.save_pretrained(repo / f"step{step}")
        tokenizer.save_pretrained(repo / f"step{step}")
    weights = (repo / "step1" / "model.safetensors").stat().st_size
    data = work / "train.jsonl"
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(tokenizer), size=(args.samples, 128))
    data.write_text("".join(json.dumps({"tokens": row.tolist()}) + "\n" for row in rows))
    config = {"series": [{"name": "bench", "hub": "bench-org/series", "revisions": {"pattern": "step*"}}],
              "datasets": [{"name": "train", "path": str(data), "seq_len": 128}],
              "select": "memorization", "run": {"device": "cpu", "batch_size": 32}}

    import memaudit

    if args.mbps is None:  # one unthrottled checkpoint's scoring time sets the bandwidth: download ~ scoring
        probe = {**config, "series": [{**config["series"][0], "revisions": ["step1"]}]}
        first = memaudit.audit(probe, cache=False).series[0].checkpoints[0]
        args.mbps = weights / 1e6 / max(first.forward_s, 1e-3)
    rows = [run_once(memaudit, hub, config, work, args.mbps * scale, weights, args.revisions, label)
            for label, scale in (("scoring dominates", 2.0), ("balanced", 1.0), ("download dominates", 0.5))
            if not args.tiny or scale == 1.0]
    versions = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "python": sys.version.split()[0]}
    for r in rows:
        print(f"{r['scenario']}: {r['revisions']} revisions of {r['weights_mb']:.2f} MB at {r['bandwidth_mbps']:.2f} "
              f"MB/s: download+load {r['download_and_load_s']:.2f} s, scoring {r['scoring_s']:.2f} s, waited "
              f"{r['waited_s']:.2f} s")
        print(f"wall {r['wall_s']:.2f} s = {r['wall_over_max']:.3f} x max(download, scoring) = "
              f"{r['wall_over_sum']:.3f} x their sum")
        print(f"peak HF cache {r['peak_disk_mb']:.2f} MB = {r['peak_disk_checkpoints']:.2f} checkpoints (--evict)")
        print(json.dumps({**versions, **r}))
    if args.out is not None:
        import platform

        device = platform.processor() or platform.machine()
        args.out.with_suffix(".json").write_text(json.dumps({**versions, "device": device, "rows": rows}, indent=1)
                                                 + "\n")
        lines = ["| scenario | revisions | weights | bandwidth | download + load | scoring | waited | wall / max | "
                 "wall / sum | peak disk |", "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['scenario']} | {r['revisions']} | {r['weights_mb']:.1f} MB | {r['bandwidth_mbps']:.1f} MB/s | "
                  f"{r['download_and_load_s']:.1f} s | {r['scoring_s']:.1f} s | {r['waited_s']:.1f} s | "
                  f"{r['wall_over_max']:.3f} | {r['wall_over_sum']:.3f} | {r['peak_disk_checkpoints']:.2f} checkpoints |"
                  for r in rows]
        args.out.with_suffix(".md").write_text(
            "\n".join(lines) + f"\n\n`python benchmarks/hub_overlap.py --out {args.out}`: {device}, {os.cpu_count()} "
            f"CPUs, torch {versions['torch']}, Python {versions['python']}, {versions['date']}.\n")


def run_once(memaudit, hub, config: dict, work: Path, mbps: float, weights: int, revisions: int, label: str) -> dict:
    """Audit the served series once with --evict at `mbps` (a fresh HF cache and memaudit cache), sampling the HF
    cache's size: the figures of one row."""
    import shutil

    for folder in ("hf", "memaudit"):
        shutil.rmtree(work / folder, ignore_errors=True)
    hub.log.clear()
    peak, stop, times = [0], threading.Event(), {}

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], folder_bytes(work / "hf"))
            time.sleep(0.02)

    def on_event(event):
        kind = type(event).__name__
        if kind == "CheckpointStarted":
            times.setdefault("start", time.perf_counter())
        elif kind == "CheckpointFinished":
            times["end"] = time.perf_counter()

    watcher = threading.Thread(target=watch, daemon=True)
    hub.throttle.rate = mbps * 1e6
    watcher.start()
    try:
        report = memaudit.audit(config, evict=True, on_event=on_event)
    finally:
        stop.set()
        watcher.join()
    checkpoints = report.series[0].checkpoints
    assert report.status == "passed" and len(checkpoints) == revisions, report.status
    download = sum(c.load_s for c in checkpoints)
    scoring = sum(c.forward_s for c in checkpoints)
    wall = times["end"] - times["start"]
    return {"scenario": label, "revisions": revisions, "weights_mb": round(weights / 1e6, 3),
            "bandwidth_mbps": round(mbps, 3), "download_and_load_s": round(download, 3), "scoring_s": round(scoring, 3),
            "waited_s": round(sum(c.wait_s for c in checkpoints), 3), "wall_s": round(wall, 3),
            "wall_over_max": round(wall / max(download, scoring), 3),
            "wall_over_sum": round(wall / (download + scoring), 3), "peak_disk_mb": round(peak[0] / 1e6, 3),
            "peak_disk_checkpoints": round(peak[0] / weights, 2),
            "weights_downloads": sorted(set(hub.downloads().values()))}


if __name__ == "__main__":
    main()
