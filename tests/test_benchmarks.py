"""benchmarks/: every benchmark runs in a tiny mode on the CPU (in CI), from the repository root as the docs say,
and prints its table."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_benchmark(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python benchmarks/<script> ARGS` from the repository root, as the docs say to run it (the script's own
    folder first on sys.path: a benchmark named like a standard-library module would shadow it there)."""
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result


def test_no_benchmark_shadows_a_standard_library_module():
    """`python benchmarks/x.py` puts benchmarks/ first on sys.path: a `statistics.py` there broke torch's compiler
    (`from statistics import median`) on the GPU, where nothing on the CPU would notice."""
    shadowing = [f.name for f in (ROOT / "benchmarks").glob("*.py") if f.stem in sys.stdlib_module_names]
    assert not shadowing


def test_the_gpu_benchmark_runs_on_a_cpu_with_tiny_shapes():
    result = run_benchmark("benchmarks/gpu.py", "--tiny", "--agreement", "tiny")
    assert result.returncode == 0, result.stderr
    for method in ("bare", "unfused", "fused"):
        assert f"| tiny | 0M | {method} |" in result.stdout
    assert '"head": "fused"' in result.stdout and '"hits_equal": true' in result.stdout
    assert '{"fused_vs_unfused": "tiny", "hits_equal": true, "ranks_equal": true' in result.stdout


def test_the_trainer_callback_benchmark_runs():
    result = run_benchmark("benchmarks/trainer_callback.py", "--steps", "4", "--every", "2", "--probes", "memorization")
    assert "+ callback, every_steps=2 (no saves)" in result.stdout and "2 audits" in result.stdout


def test_the_streaming_benchmark_runs_with_small_sizes():
    result = run_benchmark("benchmarks/streaming.py", "--sizes", "200", "400", "--seq-len", "16", "--resume", "400",
                           "--processes-check", "400", "--shard-size", "64", "--repeats", "1", timeout=900)
    assert "megatron       400" in result.stdout and "jsonl          200" in result.stdout
    # where the kill lands is a race at this size (the deterministic kill is in tests/test_shards.py)
    assert re.search(r"kill -9 at \d+ of 7 shards .*the rerun ran \d+ of 7 batches", result.stdout)
    assert result.stdout.count("results equal: True; Parquet equal: True") == 2  # kill -9 / resume, 2 processes
    assert "shards of 1024 / one shard at 200" in result.stdout


def test_the_statistics_profile_and_extraction_benchmarks_run_tiny():
    result = run_benchmark("benchmarks/membership_statistics.py", "--samples", "2000", "--shard", "64", "--seq-len", "16")
    assert re.search(r"statistics / forward = \d", result.stdout)
    result = run_benchmark("benchmarks/profiles.py", "--samples", "2000", "--checkpoints", "4", "--draws", "99")
    assert "instantaneous" in result.stdout and "planted 0.3000" in result.stdout
    result = run_benchmark("benchmarks/extraction_cost.py", "--tiny")
    assert "+ T=1, top_k=40 (the defaults)" in result.stdout and "vocabulary 512" in result.stdout


def test_the_paper_scale_profile_benchmark_runs_tiny_and_writes_its_results(tmp_path):
    import json

    result = run_benchmark("benchmarks/profiles.py", "--paper", "--per-cohort", "20", "--checkpoints", "12", "--valid",
                           "200", "--draws", "99", "--out", str(tmp_path / "p"))
    row = json.loads((tmp_path / "p.json").read_text())["rows"][0]
    assert row["treated"] == 220 and row["held_out"] == 200 and row["cohorts"] == 11 and row["placebos"] == 55
    assert "planted 0.3000" in result.stdout and "| Lesci et al. (--paper) | 220 + 200 held out | 12 |" in \
        (tmp_path / "p.md").read_text()


def test_the_docs_profile_table_is_the_benchmark_s_results_file():
    import json

    page = (ROOT / "docs" / "profiles.md").read_text()
    block = page.split("<!-- profiles-cpu -->\n")[1].split("<!-- /profiles-cpu -->")[0]
    assert block == (ROOT / "benchmarks" / "results" / "profiles-cpu.md").read_text()
    rows = json.loads((ROOT / "benchmarks" / "results" / "profiles-cpu.json").read_text())["rows"]
    assert rows[0]["cells"] > 20_000 and rows[0]["estimate_s"] < 120 and rows[0]["peak_mib"] < 4096


def test_the_tagging_benchmark_runs_on_a_small_text():
    result = run_benchmark("benchmarks/tagging_speed.py", "memaudit/lab/corpus/wikitext2_excerpt.txt")
    assert "memaudit tagging, n_process=2" in result.stdout


def test_the_end_to_end_benchmark_runs_tiny_and_writes_its_results(tmp_path):
    import json

    result = run_benchmark("benchmarks/end_to_end.py", "--tiny", "--out", str(tmp_path / "e2e"), timeout=600)
    rows = json.loads((tmp_path / "e2e.json").read_text())["rows"]
    assert [r["process"] for r in rows] == ["bare", "memaudit -k 'memorization'", "memaudit -k 'not pos'"]
    assert all(len(r["forward_s"]) == 2 and r["ratio_wall"] > 0 for r in rows[1:])
    table = (tmp_path / "e2e.md").read_text()
    assert table in result.stdout and table.count("\n| tiny | 16 |") == 3


def test_the_docs_end_to_end_table_is_the_benchmark_s_results_file():
    page = (ROOT / "docs" / "gpus.md").read_text()
    block = page.split("<!-- end_to_end-cpu -->\n")[1].split("<!-- /end_to_end-cpu -->")[0]
    assert block == (ROOT / "benchmarks" / "results" / "end_to_end-cpu.md").read_text()


def test_the_audit_speed_benchmark_runs_at_its_smallest_size():
    result = run_benchmark("benchmarks/audit_speed.py", "--sizes", "1M", "--series-size", "1M", "--device", "cpu",
                           timeout=600)
    assert "verdicts identical on" in result.stdout and "overlap ratio" in result.stdout


def test_the_records_benchmark_runs_tiny():
    result = run_benchmark("benchmarks/records.py", "--tiny")
    assert re.search(r"padding: \d+\.\d% of the input positions read", result.stdout)
    assert re.search(r"records / fixed-length, per scored token = \d", result.stdout)


def test_the_hub_overlap_benchmark_runs_tiny():
    result = run_benchmark("benchmarks/hub_overlap.py", "--tiny")
    assert re.search(r"wall [\d.]+ s = [\d.]+ x max\(download, scoring\)", result.stdout)
    assert re.search(r"peak HF cache [\d.]+ MB = [\d.]+ checkpoints \(--evict\)", result.stdout)
    assert '"weights_downloads": [1]' in result.stdout  # each revision's weights fetched once


def test_the_hub_figures_in_the_docs_and_readme_are_the_benchmark_s_results_file():
    """docs/hub.md's table and README's two figures come from benchmarks/results/hub_overlap-cpu.* as written."""
    import json

    page = (ROOT / "docs" / "hub.md").read_text()
    block = page.split("<!-- hub_overlap-cpu -->\n")[1].split("<!-- /hub_overlap-cpu -->")[0]
    assert block == (ROOT / "benchmarks" / "results" / "hub_overlap-cpu.md").read_text()
    rows = json.loads((ROOT / "benchmarks" / "results" / "hub_overlap-cpu.json").read_text())["rows"]
    readme = (ROOT / "README.md").read_text()
    for key, value in (("wall_over_max", f"{max(r['wall_over_max'] for r in rows):.2f}"),
                       ("peak", f"{max(r['peak_disk_checkpoints'] for r in rows):.1f}")):
        assert f"<!-- hub_overlap:{key} -->{value}<!-- /hub_overlap:{key} -->" in readme


def test_the_generation_benchmark_runs_tiny_and_writes_its_results(tmp_path):
    import json

    result = run_benchmark("benchmarks/generation.py", "--tiny", "--out", str(tmp_path / "gen"))
    [row] = json.loads((tmp_path / "gen.json").read_text())["rows"]
    assert row["greedy_rows_identical"] == row["batch"] and row["ratio_greedy"] > 0 and row["ratio_sampled"] > 0
    assert (tmp_path / "gen.md").read_text() in result.stdout


def test_the_docs_generation_table_is_the_benchmark_s_results_file():
    page = (ROOT / "docs" / "generation.md").read_text()
    block = page.split("<!-- generation-cpu -->\n")[1].split("<!-- /generation-cpu -->")[0]
    assert block == (ROOT / "benchmarks" / "results" / "generation-cpu.md").read_text()


def test_the_readme_generation_figure_is_the_benchmark_s_results_file():
    import json

    rows = json.loads((ROOT / "benchmarks" / "results" / "generation-cpu.json").read_text())["rows"]
    ratios = [r["ratio_greedy"] for r in rows]
    figure = f"{min(ratios):.2f}-{max(ratios):.2f}"
    assert f"<!-- generation:greedy -->{figure}<!-- /generation:greedy -->" in (ROOT / "README.md").read_text()
