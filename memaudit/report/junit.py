"""JUnit XML from a report: each check a test case, each checkpoint that could not be audited an error."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from memaudit.atomic import atomic_write_bytes
from memaudit.report.escape import escaped_report, xml_text
from memaudit.results.schema import AuditReport


def junit_xml(report: AuditReport) -> bytes:
    """The report as one JUnit `<testsuite>` (the format Jenkins, GitLab and GitHub test viewers read). Names
    and messages that hold characters XML cannot (control characters) have them written as escapes."""
    report = escaped_report(report, xml_text)
    errors = [(s, c) for s in report.series for c in s.checkpoints if c.error]
    failures = sum(not c.passed for c in report.checks)
    suite = ET.Element("testsuite", name="memaudit", tests=str(len(report.checks) + len(errors)),
                       failures=str(failures), errors=str(len(errors)), skipped="0",
                       time=f"{report.provenance.duration_s or 0:.3f}", timestamp=report.provenance.started_at)
    props = ET.SubElement(suite, "properties")
    for key in ("memaudit_version", "config_hash", "device", "dtype"):
        ET.SubElement(props, "property", name=key, value=str(getattr(report.provenance, key)))
    for check in report.checks:
        case = ET.SubElement(suite, "testcase", classname=f"memaudit.{check.series}",
                             name=f"{check.name}[{check.checkpoint or check.series}]", time="0")
        bounds = ", ".join(f"{k} {v}" for k, v in (("min", check.min), ("max", check.max)) if v is not None)
        detail = (f"metric {check.metric}, data set {check.dataset}, series {check.series}, checkpoint "
                  f"{check.checkpoint or '(series aggregate)'}, value {check.value}, bounds: {bounds}")
        if not check.passed:
            ET.SubElement(case, "failure", message=check.message, type="ThresholdExceeded").text = detail
        else:
            ET.SubElement(case, "system-out").text = detail
    for series, ckpt in errors:
        case = ET.SubElement(suite, "testcase", classname=f"memaudit.{series.name}", name=f"audit[{ckpt.name}]",
                             time=f"{ckpt.load_s + ckpt.forward_s:.3f}")
        ET.SubElement(case, "error", message=ckpt.error, type="CheckpointError").text = \
            f"{series.name}/{ckpt.name} ({ckpt.location}) could not be audited: {ckpt.error}"
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


def write_junit(report: AuditReport, path: str | Path) -> None:
    """Write the JUnit XML atomically."""
    atomic_write_bytes(Path(path), junit_xml(report))
