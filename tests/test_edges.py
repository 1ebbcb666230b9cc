"""Trust at the new edges: names made from data never collide with a user's, group values are exact, twins pair
samples by id, a missing counterpart is reported missing, every rule of the gate names something computed."""

import json
import re

import numpy as np
import pytest
import yaml


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _records(tokenizer, values, n_tokens=12, seed=0, field="dup"):
    rng = np.random.default_rng(seed)
    return [{"id": f"r{i}", "tokens": rng.integers(0, len(tokenizer), n_tokens).tolist(), field: v}
            for i, v in enumerate(values)]


def _load(tmp_path, tokenizer, records, **config):
    from memaudit.inputs.config import DatasetConfig
    from memaudit.inputs.data import load_samples

    path = _jsonl(tmp_path / "d.jsonl", records)
    return load_samples(DatasetConfig(name="d", path=path, seq_len=12, group_by="dup", **config), tokenizer)


# names made from data ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, words", [
    ("train[dup=1]", "reads as the name of a group"), ("a[b[x=]", "reads as the name of a group"),
    ("all", "reserved"), ("", "empty"),
])
def test_a_data_set_name_that_a_generated_name_could_take_is_refused(basic_config, run_cli, write_config, name,
                                                                     words):
    raw = yaml.safe_load(basic_config().read_text())
    raw["datasets"][0]["name"] = name
    code, _, err = run_cli("run", write_config(raw, name="names.yaml"))
    assert code == 2 and words in err and "Traceback" not in err


def test_integer_group_values_beyond_a_float_stay_apart(tmp_path, tokenizer):
    big = 2 ** 53
    samples = _load(tmp_path, tokenizer, _records(tokenizer, [big, big + 1, big, 3]))
    names = [g.name for g in samples.groups()]
    assert names == ["d[dup=3]", f"d[dup={big}]", f"d[dup={big + 1}]"]
    assert [len(g.index) for g in samples.groups()] == [1, 2, 1]


@pytest.mark.parametrize("values, words", [
    ([2 ** 53 + 1, 0.5], "exactly"),  # one float among integers a float cannot hold: the groups would merge
    ([2 ** 63 + 5, 1], "64-bit"),
    ([-(2 ** 70), 1], "64-bit"),
    ([1.0, float("nan")], "NaN"),
    ([1.0, float("inf")], "infinite"),
])
def test_group_values_that_cannot_be_kept_exactly_are_refused_naming_the_record(tmp_path, tokenizer, values, words):
    from memaudit.errors import ConfigError

    with pytest.raises(ConfigError, match=words) as e:
        _load(tmp_path, tokenizer, _records(tokenizer, values))
    assert "record 2" in str(e.value) or "record 1" in str(e.value)


def test_mixed_integer_and_float_group_values_that_floats_hold_are_one_numeric_field(tmp_path, tokenizer):
    samples = _load(tmp_path, tokenizer, _records(tokenizer, [1, 0.5, 2, 1.0]))
    assert [g.name for g in samples.groups()] == ["d[dup=0.5]", "d[dup=1.0]", "d[dup=2.0]"]
    assert [len(g.index) for g in samples.groups()] == [1, 2, 1]


def test_an_empty_text_group_can_be_named_in_a_check():
    from memaudit.names import group_parent

    assert group_parent("train[source=]", {"train": "source"}) == "train"


def test_a_group_s_data_set_is_found_by_its_name_not_by_parsing_brackets():
    """A data set's own name may hold brackets (`pile[deduped]`); its groups belong to it, not to `pile`."""
    from memaudit.names import group_name, group_parent

    grouped = {"pile": "deduped", "pile[deduped]": "dup"}
    assert group_parent(group_name("pile[deduped]", "dup", 4), grouped) == "pile[deduped]"
    assert group_parent(group_name("pile", "deduped", "x"), grouped) == "pile"
    assert group_parent("pile[deduped]", {"pile[deduped]": "dup"}) is None


def test_a_check_on_a_group_of_a_data_set_with_brackets_in_its_name_runs(tmp_path, tokenizer, make_series,
                                                                          write_config, run_cli):
    data = _jsonl(tmp_path / "d.jsonl", _records(tokenizer, [1, 4, 4, 1], n_tokens=16))
    config = write_config({"series": [{"name": "s", "local": str(make_series(steps=(1,)))}],
                           "datasets": [{"name": "pile[deduped]", "path": str(data), "seq_len": 16, "group_by": "dup"}],
                           "checks": [{"metric": "memorization.M", "dataset": "pile[deduped][dup=4]", "max": 1.0}],
                           "run": {"batch_size": 4}})
    code, _, err = run_cli("run", config, "-k", "memorization", "--json", tmp_path / "r.json")
    assert code == 0, err
    [check] = json.loads((tmp_path / "r.json").read_text())["checks"]
    assert check["passed"] and check["value"] is not None


# twins ------------------------------------------------------------------------------------------------------


@pytest.fixture
def twins(make_series, tokenizer, write_config, tmp_path):
    """A perturbed series and its twin (other weights), each reading `{series}/inserted.jsonl`: `build(order)`
    writes the twin's records in `order` (indices into the perturbed series' records)."""
    import torch
    from safetensors.torch import load_file, save_file

    records = _records(tokenizer, [0, 1, 4, 16] * 4, n_tokens=16, seed=3)
    perturbed, standard = make_series("perturbed", steps=(1, 2)), make_series("standard", steps=(1, 2))
    for step in (1, 2):
        weights = load_file(standard / f"step-{step}" / "model.safetensors")
        save_file({k: v + 0.01 * torch.randn_like(v) for k, v in weights.items()},
                  str(standard / f"step-{step}" / "model.safetensors"), metadata={"format": "pt"})

    def build(order):
        for name, rows in (("perturbed", records), ("standard", [records[i] for i in order])):
            (tmp_path / "data" / name).mkdir(parents=True, exist_ok=True)
            _jsonl(tmp_path / "data" / name / "inserted.jsonl", rows)
        return write_config({"series": [{"name": "perturbed", "local": str(perturbed), "reference": "standard"},
                                        {"name": "standard", "local": str(standard)}],
                             "datasets": [{"name": "inserted", "path": str(tmp_path / "data" / "{series}" /
                                                                           "inserted.jsonl"),
                                           "seq_len": 16, "group_by": "dup"}],
                             "probes": {"memorization": {"k": 4, "m": 4}, "twin": {}}, "run": {"batch_size": 4}},
                            name="twins.yaml")
    return build, len(records), standard


def _twin_results(run_cli, config, out):
    code, _, err = run_cli("run", config, "-k", "memorization or twin", "--json", out, "--no-cache")
    assert code == 0, err
    return json.loads(out.read_text())["series"][0]["results"]["twin"]


def test_a_twin_whose_file_holds_the_records_in_another_order_is_paired_by_id(twins, run_cli, tmp_path):
    build, n, _ = twins
    aligned = _twin_results(run_cli, build(list(range(n))), tmp_path / "a.json")
    shuffled = _twin_results(run_cli, build(list(reversed(range(n)))), tmp_path / "b.json")
    assert set(aligned) == set(shuffled) and len(aligned) == 5
    for name in aligned:
        for metric in ("gain", "M_twin", "M_diff"):
            assert shuffled[name][metric] == pytest.approx(aligned[name][metric], abs=1e-12), (name, metric)


def test_a_twin_file_with_fewer_records_is_not_compared_and_says_why(twins, run_cli, tmp_path):
    build, n, _ = twins
    result = _twin_results(run_cli, build(list(range(n - 3))), tmp_path / "r.json")
    assert "gain" not in result["inserted"] and "lacks 3 of this series' 16 samples" in result["inserted"]["note"]


def test_a_twin_file_with_other_text_under_the_same_ids_is_not_compared(twins, run_cli, tmp_path):
    build, n, _ = twins
    config = build(list(range(n)))
    twin_file = tmp_path / "data" / "standard" / "inserted.jsonl"
    rows = [json.loads(line) for line in twin_file.read_text().splitlines()]
    rows[0]["tokens"], rows[1]["tokens"] = rows[1]["tokens"], rows[0]["tokens"]
    _jsonl(twin_file, rows)
    result = _twin_results(run_cli, config, tmp_path / "r.json")
    assert "gain" not in result["inserted"] and "other tokens" in result["inserted"]["note"]


def test_a_step_whose_twin_checkpoint_failed_is_listed_not_replaced(twins, run_cli, tmp_path):
    build, n, standard = twins
    config = build(list(range(n)))
    (standard / "step-2" / "model.safetensors").write_bytes(b"not weights")
    code, _, err = run_cli("run", config, "-k", "memorization or twin", "--json", tmp_path / "r.json", "--no-cache")
    assert code == 1, err  # a checkpoint that cannot be loaded is an error of the run, as before
    result = json.loads((tmp_path / "r.json").read_text())["series"][0]["results"]["twin"]["inserted"]
    assert result["steps"] == [1] and result["twin_steps"] == [1] and result["steps_missing"] == [2]


# checks and the gate ----------------------------------------------------------------------------------------


@pytest.fixture
def pair_config(make_series, text_file, write_config, tokenizer, tmp_path):
    """A perturbed series with its twin, a grouped inserted set and held-out text; `build(checks=..., probes=...)`."""
    inserted = _jsonl(tmp_path / "inserted.jsonl", _records(tokenizer, [0, 1, 4, 16] * 3, n_tokens=16))
    perturbed, standard = make_series("perturbed", steps=(1, 2)), make_series("standard", steps=(1, 2))

    def build(checks=(), regressions=(), probes=None):
        return write_config({"series": [{"name": "perturbed", "local": str(perturbed), "reference": "standard"},
                                        {"name": "standard", "local": str(standard)}],
                             "datasets": [{"name": "inserted", "path": str(inserted), "seq_len": 16, "group_by": "dup"},
                                          {"name": "valid", "path": str(text_file), "role": "valid", "seq_len": 16,
                                           "max_samples": 8}],
                             "probes": probes or {"memorization": {"k": 4, "m": 4}, "twin": {},
                                                  "memorization_profile": {}},
                             "checks": list(checks), "regressions": list(regressions), "run": {"batch_size": 4}},
                            name="checks.yaml")
    return build


@pytest.mark.parametrize("check, words", [
    ({"metric": "twin.gain", "dataset": "inserted", "min": 0}, "reports only for series perturbed"),
    ({"metric": "twin.gain", "dataset": "inserted", "series": "standard", "min": 0}, "reports only for series"),
    ({"metric": "twin.gain_curve", "dataset": "inserted", "series": "perturbed", "min": 0}, "is not a number"),
    ({"metric": "twin.gain", "dataset": "inserted", "series": "perturbed", "at": "step-1", "min": 0},
     "computed once for the whole series"),
    ({"metric": "memorization_profile.instantaneous", "dataset": "inserted[dup=4]", "min": 0},
     "not on the groups of group_by"),
    ({"metric": "memorization_profile.per_cohort", "dataset": "inserted", "min": 0}, "is not a number"),
    ({"metric": "memorization_profile.note_lo", "dataset": "inserted", "min": 0}, "does not compute 'note_lo'"),
])
def test_a_check_that_could_never_have_a_value_is_refused_before_loading(pair_config, run_cli, check, words):
    code, _, err = run_cli("run", pair_config(checks=[check]))
    assert code == 2 and words in err and "Traceback" not in err, err


@pytest.mark.parametrize("metric", ["memorization_profile.instantaneous_lo", "memorization_profile.residual_se",
                                    "memorization_profile.persistent[e=1]_hi", "memorization_profile.pretrend_p"])
def test_the_profile_s_intervals_can_be_checked(pair_config, metric):
    from memaudit.engine.plan import make_plan
    from memaudit.inputs.config import load_config
    from memaudit.results.checks import validate_checks

    config, _ = load_config(pair_config(checks=[{"metric": metric, "dataset": "inserted", "min": -100}]))
    validate_checks(config, make_plan(config).probes)


def test_a_check_on_a_group_value_the_data_does_not_have_is_refused(pair_config, run_cli):
    code, _, err = run_cli("run", pair_config(checks=[{"metric": "memorization.M", "dataset": "inserted[dup=5]",
                                                       "max": 1}]), "-k", "memorization")
    assert code == 2 and "no group 'inserted[dup=5]'" in err and "inserted[dup=4]" in err, err


def _series_report(value, probe="twin", dataset="inserted", metric="gain"):
    from conftest import hand_report

    report = hand_report({"step-1": 0.5})
    report.probes[0] = report.probes[0].model_copy(update={"name": probe, "kind": "series", "show": []})
    report.series[0] = report.series[0].model_copy(update={"results": {probe: {dataset: {metric: value}}}})
    return report


def _kinds(*probes):
    from types import SimpleNamespace

    return [SimpleNamespace(name=name, kind=kind, show=(), per_dataset=True) for name, kind in probes]


@pytest.mark.parametrize("probe, metric", [("twin", "gain"), ("memorization_profile", "instantaneous")])
def test_a_regression_rule_on_a_series_metric_is_evaluated(probe, metric):
    from memaudit.results.checks import compare_to_baseline

    rule = {"metric": f"{probe}.{metric}", "dataset": "inserted", "at": "last", "max_increase": 0.1}
    baseline, now = _series_report(0.909, probe, metric=metric), _series_report(1.062, probe, metric=metric)
    checks, comparison = compare_to_baseline(now.series, baseline, [rule], 0.0, _kinds((probe, "series")))
    [check] = checks
    assert not check.passed and comparison.compared == 1 and "moved +0.153" in check.message
    checks, _ = compare_to_baseline(now.series, now, [rule], 0.0, _kinds((probe, "series")))
    assert [c.passed for c in checks] == [True]


def test_a_regression_rule_that_compares_nothing_fails():
    from memaudit.results.checks import compare_to_baseline
    from conftest import hand_report

    report = hand_report()
    rules = [{"metric": "memorization.M", "dataset": "private", "at": "last", "max_increase": 0.1},
             {"metric": "memorization.M", "dataset": "private[dup=7]", "at": "last", "max_increase": 0.1}]
    checks, comparison = compare_to_baseline(report.series, report, rules, 0.0, _kinds(("memorization", "checkpoint")))
    assert [c.passed for c in checks] == [True, False] and comparison.compared == 1
    assert "compared nothing" in checks[1].message and "private[dup=7]" in checks[1].message


# the per-sample folder --------------------------------------------------------------------------------------


@pytest.fixture
def audited(basic_config, run_cli, tmp_path):
    """An audit with --samples-out: (config, report path, folder)."""
    config = basic_config()
    code, _, err = run_cli("run", config, "-k", "memorization", "--json", tmp_path / "r.json",
                           "--samples-out", tmp_path / "rows")
    assert code == 0, err
    return config, tmp_path / "r.json", tmp_path / "rows"


def test_the_rows_of_a_report_are_those_it_wrote_or_an_error(audited, run_cli, tmp_path):
    import memaudit
    from memaudit.errors import ConfigError

    config, path, folder = audited
    report = memaudit.read_report(path)
    assert len(report.samples_frame()) == 36
    raw = yaml.safe_load(config.read_text())
    raw["probes"] = {"memorization": {"k": 8, "m": 8}}  # another run writes other rows into the same folder
    config.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli("run", config, "-k", "memorization", "--json", tmp_path / "r2.json", "--samples-out", folder)
    assert code == 0, err
    with pytest.raises(ConfigError, match="another run has written over it"):
        report.samples_frame()
    code, _, err = run_cli("show", path, "--samples-csv", tmp_path / "rows.csv")
    assert code == 2 and "another run has written over it" in err and not (tmp_path / "rows.csv").exists()
    assert len(memaudit.read_report(tmp_path / "r2.json").samples_frame()) == 36
    next(folder.rglob("*.parquet")).unlink()
    with pytest.raises(ConfigError, match="is missing"):
        memaudit.read_report(tmp_path / "r2.json").samples_frame()


def test_a_checkpoint_dropped_from_the_series_leaves_the_folder(audited, run_cli, tmp_path):
    import shutil

    pd = pytest.importorskip("pandas")
    config, _, folder = audited
    local = yaml.safe_load(config.read_text())["series"][0]["local"]
    shutil.rmtree(f"{local}/step-4")
    code, _, err = run_cli("run", config, "-k", "memorization", "--samples-out", folder)
    assert code == 0, err
    assert sorted(pd.read_parquet(folder).checkpoint.unique()) == ["step-1", "step-2"]


def test_a_field_of_another_type_in_another_data_set_is_refused_before_scoring(tmp_path, tokenizer, make_series,
                                                                                write_config, run_cli):
    a = _jsonl(tmp_path / "a.jsonl", _records(tokenizer, [1, 2], n_tokens=16))
    b = _jsonl(tmp_path / "b.jsonl", _records(tokenizer, ["x", "y"], n_tokens=16))
    config = write_config({"series": [{"name": "s", "local": str(make_series(steps=(1,)))}],
                           "datasets": [{"name": "a", "path": str(a), "seq_len": 16, "group_by": "dup"},
                                        {"name": "b", "path": str(b), "seq_len": 16, "group_by": "dup"}],
                           "run": {"batch_size": 4}})
    code, _, err = run_cli("run", config, "-k", "memorization", "--samples-out", tmp_path / "rows")
    assert code == 2 and "holds text in data set 'b'" in err and "integers in data set 'a'" in err
    assert not list((tmp_path / "rows").rglob("*"))


def test_per_sample_tables_hold_each_sample_once_with_group_by(tmp_path, tokenizer, make_series, write_config,
                                                               run_cli):
    import memaudit

    a = _jsonl(tmp_path / "a.jsonl", _records(tokenizer, [1, 2, 2, 1], n_tokens=16))
    config = write_config({"series": [{"name": "s", "local": str(make_series(steps=(1,)))}],
                           "datasets": [{"name": "a", "path": str(a), "seq_len": 16, "group_by": "dup"}],
                           "probes": {"memorization": {"k": 4, "m": 4, "per_sample": True}},
                           "run": {"batch_size": 4}})
    code, _, err = run_cli("run", config, "-k", "memorization", "--json", tmp_path / "r.json")
    assert code == 0, err
    frame = memaudit.read_report(tmp_path / "r.json").samples_frame()
    assert list(frame.sample_index) == [0, 1, 2, 3] and set(frame.dataset) == {"a"}


def test_the_per_sample_schema_lists_the_data_s_field_columns(run_cli):
    code, out, _ = run_cli("schema", "--samples")
    assert code == 0 and "`data_<field>`" in out and "group_by" in out


# fuzzing the new surfaces -----------------------------------------------------------------------------------


def test_group_values_of_any_json_type_are_grouped_exactly_or_refused(tmp_path_factory, tokenizer):
    """Random group_by values (every JSON type, huge and tiny numbers, NaN, mixes): loading either refuses them
    with a ConfigError or makes groups that split the samples exactly by value, with distinct names."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from memaudit.errors import ConfigError

    scalar = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                       st.sampled_from([0, 1, 2 ** 53, 2 ** 53 + 1, 2 ** 63 - 1, 2 ** 63]),
                       st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.5, 1.0, 2.0 ** 53]),
                       st.text(max_size=3), st.lists(st.integers(), max_size=2))

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(scalar, min_size=1, max_size=6))
    def check(values):
        folder = tmp_path_factory.mktemp("fuzz")
        records = [{**r, "dup": v} for r, v in zip(_records(tokenizer, [0] * len(values)), values)]
        path = folder / "d.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        try:
            samples = _load(folder, tokenizer, [json.loads(line) for line in path.read_text().splitlines()])
        except ConfigError:
            return
        groups = samples.groups()
        assert len({g.name for g in groups}) == len(groups)
        assert sorted(i for g in groups for i in g.index) == list(range(len(values)))
        parsed = [json.loads(line)["dup"] for line in path.read_text().splitlines()]
        for index in (g.index for g in groups):  # members of a group hold equal values, of different groups not
            assert len({repr(parsed[i]) if isinstance(parsed[i], str) else parsed[i] for i in index}) == 1 or \
                all(parsed[i] == parsed[index[0]] for i in index)
        firsts = [parsed[g.index[0]] for g in groups]
        assert all(a != b for k, a in enumerate(firsts) for b in firsts[k + 1:])

    check()


def test_a_check_on_any_metric_any_probe_declares_is_accepted_or_refused_clearly(pair_config):
    """Every declared metric of every probe (templates filled in), on every data set and group, with and
    without a series: validation accepts it or raises a ConfigError, nothing else."""
    from memaudit.engine.plan import make_plan
    from memaudit.errors import ConfigError
    from memaudit.inputs.config import CheckConfig, load_config
    from memaudit.results.checks import validate_checks

    config, _ = load_config(pair_config())
    probes = make_plan(config).probes
    accepted = refused = 0
    for p in probes:
        for metric in p.metrics:
            name = re.sub(r"<[^>]+>", "x", metric).replace("@tau", "@0.5")
            for dataset in ("inserted", "valid", "inserted[dup=4]", "all", None):
                for extra in ({}, {"series": "perturbed"}, {"at": "each"}):
                    check = {"metric": f"{p.name}.{name}", "min": 0, **extra,
                             **({"dataset": dataset} if dataset else {})}
                    try:
                        validate_checks(config.model_copy(update={"checks": [CheckConfig(**check)]}), probes)
                        accepted += 1
                    except ConfigError:
                        refused += 1
    assert accepted > 20 and refused > 20
