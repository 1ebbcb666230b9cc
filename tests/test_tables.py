"""A report as tables: `to_frame()`, `samples_frame()` and `memaudit show --csv` hold the report's numbers."""

import csv
import json

import pytest

import memaudit


@pytest.fixture(scope="module")
def lab_report(small_lab, tmp_path_factory):
    """The small lab audited with per-sample tables, written to JSON."""
    import yaml

    raw = yaml.safe_load((small_lab / "checkpoints.yaml").read_text())
    raw["probes"] = {**raw.get("probes", {}), "memorization": {"per_sample": True, "k": 8, "m": 8},
                     "membership": {"per_sample": True}}
    path = small_lab / "per-sample.yaml"
    path.write_text(yaml.safe_dump(raw))
    report = memaudit.audit(path, cache=False, select="memorization or membership")
    out = tmp_path_factory.mktemp("report") / "report.json"
    out.write_text(report.model_dump_json())
    return report, out


def test_every_number_of_the_report_is_one_row_of_the_frame(lab_report):
    report, _ = lab_report
    frame = report.to_frame()
    assert list(frame.columns) == ["series", "checkpoint", "step", "tokens_seen", "n_params", "probe", "kind",
                                   "dataset", "metric", "value"]
    for s in report.series:
        for c in s.checkpoints:
            for name in ("M", "loss", "extractable"):
                row = frame[(frame.series == s.name) & (frame.checkpoint == c.name) & (frame.probe == "memorization")
                            & (frame.dataset == "train") & (frame.metric == name)]
                expected, [value] = c.metric("memorization", "train", name), row.value.tolist()
                assert value == expected or (expected is None and value != value)  # None: NaN in the frame
                assert row.step.tolist() == [c.step] and row.n_params.tolist() == [c.n_params]
        T = frame[(frame.series == s.name) & (frame.kind == "series") & (frame.metric == "T_step@0.5")]
        assert len(T) == len(s.results["memorization_series"])  # one per data set, None when never reached
    assert not frame.metric.str.startswith("samples").any()  # per-sample columns go to samples_frame


def test_the_samples_frame_lists_every_sample(lab_report):
    import numpy as np

    report, _ = lab_report
    samples = report.samples_frame()
    assert list(samples.columns[:8]) == ["series", "checkpoint", "step", "tokens_seen", "dataset", "sample_index",
                                         "sample_id", "seen_at_step"]
    assert str(samples.step.dtype) == "Int64"
    s, c = report.series[0], report.series[0].checkpoints[-1]
    mine = samples[(samples.series == s.name) & (samples.checkpoint == c.name) & (samples.dataset == "train")]
    assert len(mine) == c.metric("memorization", "train", "n_samples")
    assert np.isclose(mine.memorization_M.mean(), c.metric("memorization", "train", "M"))  # equal-length samples
    assert mine.memorization_extractable.sum() == c.metric("memorization", "train", "n_extractable")
    assert np.allclose(mine.membership_loss_score, -mine.memorization_loss)  # one row holds both probes' values
    scored = samples[(samples.checkpoint == c.name) & (samples.series == s.name)
                     & samples.membership_loss_score.notna()]
    assert set(scored.dataset) == {"train", "valid"} and len(scored) == (c.metric("membership", "all", "n_members")
                                                                         + c.metric("membership", "all", "n_non_members"))


def test_to_frame_types_and_one_row_per_checkpoint(lab_report):
    report, _ = lab_report
    frame = report.to_frame()
    assert str(frame.step.dtype) == "Int64" and str(frame.tokens_seen.dtype) == "Int64"
    wide = report.to_frame(wide=True)
    c = report.series[0].checkpoints[-1]
    row = wide[(wide.series == report.series[0].name) & (wide.checkpoint == c.name) & (wide.dataset == "train")]
    assert len(row) == 1 and row["memorization.M"].item() == c.metric("memorization", "train", "M")


def test_a_report_without_per_sample_values_says_how_to_get_them(lab_report):
    report, _ = lab_report
    bare = report.model_copy(update={"series": [s.model_copy(update={"checkpoints": []}) for s in report.series]})
    with pytest.warns(UserWarning, match="--samples-out DIR"):
        assert bare.samples_frame().empty


def test_show_writes_the_same_tables_as_csv(lab_report, tmp_path, run_cli):
    report, path = lab_report
    code, _, err = run_cli("show", path, "-q", "--csv", tmp_path / "m.csv", "--samples-csv", tmp_path / "s.csv")
    assert code == report.exit_code, err
    with open(tmp_path / "m.csv") as f:
        rows = list(csv.DictReader(f))
    frame = report.to_frame()
    assert len(rows) == len(frame)
    first = rows[0]
    assert float(first["value"]) == pytest.approx(frame.value.iloc[0])
    with open(tmp_path / "s.csv") as f:
        assert sum(1 for _ in csv.DictReader(f)) == len(report.samples_frame())


def test_show_refuses_to_write_over_its_report(lab_report, tmp_path, run_cli):
    _, path = lab_report
    before = path.read_text()
    code, _, err = run_cli("show", path, "--csv", path)
    assert code == 2 and "would overwrite the report" in err and path.read_text() == before
    code, _, err = run_cli("show", path, "--csv", tmp_path / "x.csv", "--samples-csv", tmp_path / "x.csv")
    assert code == 2 and "both write" in err


def test_a_frame_without_pandas_says_what_to_install(lab_report, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(memaudit.errors.ConfigError, match="pip install pandas"):
        lab_report[0].to_frame()
    assert json.loads(lab_report[0].model_dump_json())  # the report itself needs no pandas
