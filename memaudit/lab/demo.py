"""`memaudit demo`: train the built-in series (once) and hand back its audit config."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from memaudit.lab.config import parse_lab_config


def demo_lab_config(out: Path):
    """The shipped demo recipe, writing into `out`."""
    raw = yaml.safe_load((resources.files("memaudit.lab") / "recipes" / "demo.yaml").read_text(encoding="utf-8"))
    return parse_lab_config({**raw["lab"], "out": str(out)}, Path.cwd(), "the built-in demo recipe")


def prepare_demo(out: Path, overwrite: bool = False, console=None) -> Path:
    """Train the demo series into `out` unless it is there already; return its `checkpoints.yaml`."""
    from memaudit.lab.train import run_lab

    lab = demo_lab_config(out)
    if console is not None:
        console.print(f"memaudit demo: training {len(lab.runs)} tiny GPT-NeoX series into {lab.out} "
                      "(skipped when already there)", highlight=False)
    run_lab(lab, overwrite=overwrite, console=console)
    return lab.out / "checkpoints.yaml"
