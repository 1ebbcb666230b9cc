"""CI integration: JUnit XML, the pytest plugin, baseline comparison."""

import json
import xml.etree.ElementTree as ET

import pytest

from memaudit.engine.registry import collect, standard_probe_dir
from memaudit.inputs.config import RegressionRule
from memaudit.report.checks import compare_to_baseline
from memaudit.report.schema import (
    AuditReport,
    CheckpointResult,
    Provenance,
    SeriesResult,
)

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


def _report(values: dict) -> AuditReport:
    ckpts = [CheckpointResult(name=name, step=i, location="-", results={"memorization": {"private": {"M": m}}})
             for i, (name, m) in enumerate(values.items())]
    provenance = Provenance(memaudit_version="0", python_version="3", platform="x", dtype="float32", batch_size=1,
                            seed=0, config_hash="h", command="c", started_at="t")
    return AuditReport(status="passed", exit_code=0, provenance=provenance,
                       series=[SeriesResult(name="s", source="-", tokenizer="t", checkpoints=ckpts)])


def test_baseline_comparison_on_hand_built_reports():
    probes = collect([standard_probe_dir()])
    old = _report({"a": 0.10, "b": 0.20})
    new = _report({"a": 0.11, "b": 0.23})
    rule = RegressionRule(metric="memorization.M", dataset="private", at="last", max_increase=0.02)
    [r] = compare_to_baseline(new.series, old, [rule], 0.02, probes)
    assert not r.passed and r.value == pytest.approx(0.03) and "+0.03" in r.message
    [ok] = compare_to_baseline(_report({"a": 0.1, "b": 0.21}).series, old, [rule], 0.02, probes)
    assert ok.passed
    each = compare_to_baseline(new.series, old, [rule.model_copy(update={"at": "each"})], 0.02, probes)
    assert [c.passed for c in each] == [True, False]
    drift = compare_to_baseline(_report({"a": 0.1, "b": 0.15}).series, old, [], 0.02, probes)
    assert [(c.metric, c.passed) for c in drift] == [("memorization.M", False)]  # default: ±0.02 on shown metrics


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
