"""benchmarks/: the GPU benchmark runs on the CPU with tiny shapes (in CI), and prints its table."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_benchmark_runs_on_a_cpu_with_tiny_shapes():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--tiny", "--agreement", "tiny"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for method in ("bare", "unfused", "fused"):
        assert f"| tiny | 0M | {method} |" in result.stdout
    assert '"head": "fused"' in result.stdout and '"hits_equal": true' in result.stdout


def test_the_trainer_callback_benchmark_runs():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "trainer_callback.py"), "--steps", "4",
                             "--every", "2", "--probes", "memorization"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "+ callback, every_steps=2 (no saves)" in result.stdout and "2 audits" in result.stdout


def test_the_streaming_benchmark_runs_with_small_sizes():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "streaming.py"), "--sizes", "200", "400",
                             "--seq-len", "16", "--resume", "400", "--processes-check", "400",
                             "--shard-size", "64", "--repeats", "1"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "megatron       400" in result.stdout and "jsonl          200" in result.stdout
    # where the kill lands is a race at this size (the deterministic kill is in tests/test_shards.py)
    assert re.search(r"kill -9 at \d+ of 7 shards .*the rerun ran \d+ of 7 batches", result.stdout)
    assert result.stdout.count("results equal: True; Parquet equal: True") == 2  # kill -9 / resume, 2 processes
    assert "shards of 1024 / one shard at 200" in result.stdout
