"""memaudit/integrations/cli.py end to end: report, exit codes, -k, -x, show, schema, list, bad input."""

import json
import subprocess
import sys

import pytest

from memaudit.results.schema import AuditReport


def test_run_writes_a_valid_report_and_renders_it(basic_config, run_cli, tmp_path):
    config = basic_config(checks=[{"metric": "memorization.M", "max": 0.99, "at": "each"}])
    code, out, err = run_cli("run", config, "--json", tmp_path / "report.json")
    assert code == 0, err
    report = AuditReport.model_validate_json((tmp_path / "report.json").read_text())
    assert report.status == "passed" and report.exit_code == 0
    series = report.series[0]
    assert [c.name for c in series.checkpoints] == ["step-1", "step-2", "step-4"]
    m = series.checkpoints[0].results["memorization"]["train"]
    assert 0.0 <= m["M"] <= 1.0 and m["n_samples"] == 12 and m["n_tokens"] == 12 * 31
    assert series.n_params and series.checkpoints[0].n_params == series.n_params
    assert report.provenance.config_hash and report.provenance.torch_version
    assert report.provenance.head == "fused" and report.provenance.attention  # which output layer and attention ran
    assert "memaudit audit" in out and "3 passed in" in out and "memorization · tiny" in out


def test_failed_check_exits_1(basic_config, run_cli, tmp_path):
    config = basic_config(checks=[{"metric": "memorization.loss", "max": 1.0}])
    code, out, _ = run_cli("run", config, "--json", tmp_path / "r.json")
    assert code == 1
    assert "1 failed" in out and "FAIL" in out
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "failed"


def test_quiet_prints_only_failures_and_summary(basic_config, run_cli):
    code, out, _ = run_cli("run", basic_config(checks=[{"metric": "memorization.loss", "max": 1.0}]), "-q")
    assert code == 1 and "memaudit audit" not in out
    assert out.strip().splitlines()[0].startswith("FAIL memorization.loss")


def test_exitfirst_stops_at_the_first_failing_checkpoint(basic_config, run_cli, tmp_path):
    config = basic_config(checks=[{"metric": "memorization.loss", "max": 1.0, "at": "each"}])
    code, _, _ = run_cli("run", config, "-x", "--json", tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 1 and len(report["series"][0]["checkpoints"]) == 1


def test_keyword_selects_probes_and_no_match_is_exit_5(basic_config, run_cli, tmp_path):
    config = basic_config()
    code, _, _ = run_cli("run", config, "-k", "memorization and not series", "--json", tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and [p["name"] for p in report["probes"]] == ["memorization"]
    code, _, err = run_cli("run", config, "-k", "nothing_like_this")
    assert code == 5 and "No probe was selected" in err


def test_products_cache_second_run_does_no_forward_pass(basic_config, run_cli, tmp_path, monkeypatch):
    import memaudit.engine.forward

    calls = []
    real = memaudit.engine.forward.score
    monkeypatch.setattr(memaudit.engine.forward, "score", lambda *a, **k: calls.append(1) or real(*a, **k))
    config = basic_config()
    run_cli("run", config, "--json", tmp_path / "a.json")
    first = len(calls)
    run_cli("run", config, "--json", tmp_path / "b.json")
    assert first == 3 and len(calls) == first  # one pass per checkpoint, then none
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert all(c["from_cache"] and c["n_forward_batches"] == 0 for c in b["series"][0]["checkpoints"])
    strip = lambda r: [c["results"] for c in r["series"][0]["checkpoints"]]  # noqa: E731
    assert strip(a) == strip(b)


def test_a_probe_needing_a_new_product_recomputes_only_then(basic_config, run_cli, tmp_path, write_config):
    probe_file = tmp_path / "my_probes.py"
    probe_file.write_text(
        "from memaudit import probe\n\n"
        "@probe\n"
        "def mean_rank(ranks):\n"
        "    return {'rank': float(ranks.mean())}\n")
    run_cli("run", basic_config(), "--json", tmp_path / "a.json")
    config = basic_config(probe_paths=[str(probe_file)])
    code, out, err = run_cli("run", config, "--json", tmp_path / "b.json")
    assert code == 0, err
    b = json.loads((tmp_path / "b.json").read_text())
    assert all(c["n_forward_batches"] > 0 for c in b["series"][0]["checkpoints"])  # ranks were not cached
    assert b["series"][0]["checkpoints"][0]["results"]["mean_rank"]["train"]["rank"] >= 1
    code, _, _ = run_cli("run", config, "--json", tmp_path / "c.json")
    c = json.loads((tmp_path / "c.json").read_text())
    assert all(ck["from_cache"] for ck in c["series"][0]["checkpoints"])


def test_show_rerenders_a_saved_report_without_torch(basic_config, run_cli, tmp_path):
    run_cli("run", basic_config(), "--json", tmp_path / "r.json")
    code = ("import sys; from memaudit.integrations.cli import main; c = main(['show', sys.argv[1]]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(c)")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.json")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "memorization · tiny" in result.stdout and "no checks" in result.stdout


def test_schema_is_json_schema(run_cli):
    code, out, _ = run_cli("schema")
    schema = json.loads(out)
    assert code == 0 and schema["title"] == "AuditReport"
    assert "schema_version" in schema["properties"]
    assert schema["properties"]["status"]["description"].startswith("passed")


def test_list_resolves_without_loading_a_model(basic_config, run_cli, monkeypatch):
    import memaudit.inputs.sources

    monkeypatch.setattr(memaudit.inputs.sources, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    code, out, _ = run_cli("list", basic_config())
    assert code == 0
    assert "memorization" in out and "hits, logprobs" in out and "step-4" in out and "k=32" in out


def test_help_does_not_import_torch():
    code = "import sys; from memaudit.integrations.cli import main; main(['--help']); assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_debug_is_accepted_after_the_command_and_a_closed_pipe_ends_quietly(run_cli, tmp_path):
    import subprocess
    import sys

    code, _, err = run_cli("show", tmp_path / "missing.json", "--debug")
    assert code == 2 and "Traceback" in err and "No report at" in err
    for command in (["schema"], ["schema", "--samples"]):  # the reader has gone before the first write
        proc = subprocess.Popen([sys.executable, "-m", "memaudit", *command], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait() == 0 and "Traceback" not in err and "Error" not in err, err
