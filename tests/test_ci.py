"""CI integration: JUnit XML, the pytest plugin, baseline comparison."""

import json
import xml.etree.ElementTree as ET

import pytest

from memaudit.engine.registry import collect, standard_probe_dir
from memaudit.inputs.config import CheckConfig, DatasetConfig, RegressionRule
from memaudit.results.checks import compare_to_baseline, evaluate_checks
from conftest import hand_report

CHECKS = [{"name": "low loss", "metric": "memorization.loss", "max": 1.0, "at": "each"},
          {"name": "some M", "metric": "memorization.M", "min": 0.0, "at": "last"}]


def test_junit_xml_has_a_case_per_check_and_an_error_per_broken_checkpoint(basic_config, run_cli, tmp_path):
    code, _, err = run_cli("run", basic_config(checks=CHECKS), "--junit-xml", tmp_path / "j.xml", "-k", "memorization")
    assert code == 1, err
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "4" and suite.get("failures") == "3"
    cases = suite.findall("testcase")
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == 3 and all(c.get("classname") == "memaudit.tiny" for c in cases)
    message = failed[0].find("failure").get("message")
    assert "memorization.loss" in message and "> max 1.0" in message and "step-1" in message
    assert "value" in failed[0].find("failure").text


def test_plugin_turns_checks_into_pytest_items(basic_config, pytester, tmp_path):
    config = basic_config(checks=CHECKS, select="memorization")
    result = pytester.runpytest_inprocess("--memaudit", str(config), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*low loss[[]tiny/step-1[]]*", "*memorization.loss = * > max 1.0*"])
    only = pytester.runpytest_inprocess("--memaudit", str(config), "-k", "some", "-p", "no:cacheprovider")
    only.assert_outcomes(passed=1, deselected=3)
    assert only.ret == pytest.ExitCode.OK


def test_plugin_reports_a_bad_config_as_a_collection_error(write_config, pytester):
    config = write_config({"series": [{"local": "nope"}], "datasets": [{"name": "d", "path": "x.txt", "rol": 1}]})
    result = pytester.runpytest_inprocess("--memaudit", str(config), "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*memaudit:*unknown key 'rol'*"])


@pytest.fixture(scope="module")
def probes():
    return [p for p in collect([standard_probe_dir()]) if p.name == "memorization"]


def test_baseline_comparison_on_hand_built_reports(probes):
    old = hand_report({"a": 0.10, "b": 0.20})
    new = hand_report({"a": 0.11, "b": 0.23})
    rule = RegressionRule(metric="memorization.M", dataset="private", at="last", max_increase=0.02)
    [r], comparison = compare_to_baseline(new.series, old, [rule], 0.02, probes)
    assert not r.passed and r.value == pytest.approx(0.03) and "+0.03" in r.message and comparison.compared == 1
    [ok], _ = compare_to_baseline(hand_report({"a": 0.1, "b": 0.21}).series, old, [rule], 0.02, probes)
    assert ok.passed
    each, _ = compare_to_baseline(new.series, old, [rule.model_copy(update={"at": "each"})], 0.02, probes)
    assert [c.passed for c in each] == [True, False]
    drift, _ = compare_to_baseline(hand_report({"a": 0.1, "b": 0.15}).series, old, [], 0.02, probes)
    assert [(c.metric, c.passed) for c in drift] == [("memorization.M", False)]  # default: ±0.02 on shown metrics


def test_a_series_that_grew_compares_its_new_last_checkpoint(probes):
    """The baseline ended at step-112; the series now reaches step-240 with M 0.99: the gate compares the
    last checkpoints (and says which), and lists the new checkpoint for `at: each`."""
    old = hand_report({"step-0": 0.50, "step-112": 0.50})
    new = hand_report({"step-0": 0.50, "step-112": 0.50, "step-240": 0.99})
    [r], comparison = compare_to_baseline(new.series, old, [], 0.02, probes)
    assert not r.passed and (r.checkpoint, r.baseline_checkpoint) == ("step-240", "step-112")
    assert "+0.49" in r.message and "baseline: step-112" in r.message and comparison.compared == 1
    rule = RegressionRule(metric="memorization.M", dataset="private", at="each", max_increase=0.02)
    each, comparison = compare_to_baseline(new.series, old, [rule], 0.02, probes)
    assert [c.passed for c in each] == [True, True] and comparison.compared == 2
    assert comparison.new == ["memorization.M [private] of series 's' at step-240: not in the baseline"]
    fewer, comparison = compare_to_baseline(old.series, new, [rule], 0.02, probes)  # a checkpoint went missing
    [missing] = [c for c in fewer if not c.passed]
    assert missing.baseline_checkpoint == "step-240" and "step-240" in comparison.not_compared[0]
    assert comparison.compared == 2


def test_a_renamed_series_is_not_compared_and_fails(probes):
    old = hand_report({"step-0": 0.5, "step-112": 0.5}, series="pythia-70m")
    new = hand_report({"step-0": 0.5, "step-112": 0.9}, series="pythia-70m-deduped")
    checks, comparison = compare_to_baseline(new.series, old, [], 0.02, probes)
    assert comparison.compared == 0 and not any(c.passed for c in checks)
    assert "series 'pythia-70m' of the baseline is not in this run" in checks[0].message
    assert "nothing was compared" in checks[-1].message
    assert comparison.new == ["series 'pythia-70m-deduped': not in the baseline"]


@pytest.mark.parametrize("before, after", [(float("nan"), 0.5), (0.5, float("nan")), (float("inf"), 0.5)])
def test_nan_on_either_side_fails_the_comparison(probes, before, after):
    [r, nothing], comparison = compare_to_baseline(hand_report({"a": after}).series, hand_report({"a": before}), [], 0.02,
                                                   probes)
    assert not r.passed and "cannot be compared" in r.message and comparison.compared == 0
    assert not nothing.passed and "nothing was compared" in nothing.message


def test_a_nan_value_fails_a_threshold_check(probes):
    report = hand_report({"a": float("nan")})
    check = CheckConfig(metric="memorization.M", max=0.5)
    [r] = evaluate_checks([check], report.series, probes, [DatasetConfig(name="private", path="x.txt")])
    assert not r.passed and "nan" in r.message


def test_save_baseline_then_compare_end_to_end(basic_config, run_cli, tmp_path):
    config = basic_config(select="memorization")
    assert run_cli("run", config, "--save-baseline", tmp_path / "b.json")[0] == 0
    code, out, _ = run_cli("run", config, "--compare", tmp_path / "b.json", "--json", tmp_path / "r.json")
    names = [c["name"] for c in json.loads((tmp_path / "r.json").read_text())["checks"]]
    assert code == 0 and "baseline memorization.M[train]@last" in names and "2 passed" in out
    report = json.loads((tmp_path / "b.json").read_text())
    report["series"][0]["checkpoints"][-1]["results"]["memorization"]["train"]["M"] -= 0.5
    (tmp_path / "b.json").write_text(json.dumps(report))
    code, out, _ = run_cli("run", config, "--compare", tmp_path / "b.json", "-q")
    assert code == 1 and "moved +0.5" in out
    code, out, _ = run_cli("run", config, "--compare", tmp_path / "b.json", "--json", tmp_path / "r.json")
    comparison = json.loads((tmp_path / "r.json").read_text())["comparison"]
    assert comparison["compared"] >= 1 and f"compared {comparison['compared']} values with the baseline" in out


def test_collect_only_lists_the_items_without_running_the_audit(basic_config, pytester, tmp_path):
    """`--co` resolves the series and lists the items; the audit does not run (no report is written)."""
    config = basic_config(checks=CHECKS, select="memorization")
    result = pytester.runpytest_subprocess("--memaudit", str(config), "--memaudit-json", str(tmp_path / "r.json"),
                                           "--co", "-q", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*low loss[[]tiny/step-1[]]*", "*low loss[[]tiny/step-4[]]*",
                                 "*some M[[]tiny/step-4[]]*", "*4 tests collected*"])
    assert not (tmp_path / "r.json").exists()


def test_the_example_workflow_s_audit_runs_first_time_and_then_compares(basic_config, tmp_path):
    """The Audit step of examples/github-actions.yml, run as the runner would (bash, in the repository):
    the first run finds no baseline and writes it; the second compares with it and says what it compared."""
    import shutil
    import subprocess
    from pathlib import Path

    import yaml

    workflow = yaml.safe_load((Path(__file__).parent.parent / "examples" / "github-actions.yml").read_text())
    [script] = [s["run"] for s in workflow["jobs"]["audit"]["steps"] if s.get("name") == "Audit"]
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(basic_config(select="memorization"), repo / "checkpoints.yaml")
    if shutil.which("memaudit") is None:
        pytest.skip("the memaudit command is not installed")
    first = subprocess.run(["bash", "-e", "-c", script], cwd=repo, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "No memaudit-baseline.json yet" in first.stdout and (repo / "memaudit-baseline.json").is_file()
    second = subprocess.run(["bash", "-e", "-c", script], cwd=repo, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    report = json.loads((repo / "memaudit-report.json").read_text())
    assert report["comparison"]["compared"] > 0 and (repo / "memaudit-junit.xml").is_file()
