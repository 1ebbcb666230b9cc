"""Several processes (GPUs, nodes, or CPU processes) through accelerate: who audits which checkpoint,
and gathering the results on every process. One process is the plain case of the same code."""

from __future__ import annotations

import os


def process_state(device: str):
    """accelerate's PartialState for this process: multi-GPU with nccl under `accelerate launch` or
    torchrun on GPUs, multi-CPU with gloo when the audit runs on the CPU."""
    import torch
    from accelerate import PartialState

    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    return PartialState(cpu=cpu)


def my_share(state, n: int) -> list[int]:
    """Indices of the checkpoints this process audits: contiguous shares, as split_between_processes gives."""
    if state.num_processes == 1:
        return list(range(n))
    with state.split_between_processes(list(range(n))) as mine:
        return list(mine)


def gather(state, items: list) -> list:
    """Every process's items, on every process (in process order)."""
    if state.num_processes == 1:
        return items
    from accelerate.utils import gather_object

    return gather_object(items)


def launch(processes: int, argv: list[str]) -> int:
    """Run `memaudit <argv>` in `processes` local processes with torchrun (what `accelerate launch`
    uses underneath) and return its exit code."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1)
                                                                                        // processes)))}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "memaudit", *argv]
    return subprocess.run(command, env=env).returncode
