"""What a benchmark's results file says about its run, and writing it: `<stem>.json` (about + rows) and `<stem>.md`
(the table the docs embed). Shared by the benchmarks that write files under benchmarks/results/."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def device_name(device: str) -> str:
    """The GPU's name, or `cpu`."""
    import torch

    return torch.cuda.get_device_name() if device == "cuda" else "cpu"


def about_run(device: str, dtype: str, **extra) -> dict:
    """Date, device, CPU cores, torch, transformers, dtype, Python, the benchmark's own figures (`extra`) and its
    command-line arguments."""
    import torch
    import transformers

    return {"date": dt.date.today().isoformat(), "device": device_name(device), "cpus": os.cpu_count(),
            "torch": torch.__version__, "transformers": transformers.__version__, "dtype": dtype,
            "python": platform.python_version(), **extra, "arguments": " ".join(sys.argv[1:]) or "(defaults)"}


def measured(about: dict) -> str:
    """The start of a results table's first line: `Measured <date> on <device> (<n> CPU cores), torch ..., transformers
    ..., <dtype>`."""
    return (f"Measured {about['date']} on {about['device']} ({about['cpus']} CPU cores), torch {about['torch']}, "
            f"transformers {about['transformers']}, {about['dtype']}")


def write_results(out: str | None, name: str, device: str, about: dict, rows: list, table: str) -> None:
    """`out`.json and `out`.md (default benchmarks/results/<name>-<device>)."""
    stem = Path(out) if out else RESULTS / f"{name}-{device}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps({"about": about, "rows": rows}, indent=1))
    Path(f"{stem}.md").write_text(table)
