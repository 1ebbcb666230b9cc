"""Memorization profiles (probes/profile.py, probes/_did.py, memaudit/engine/panel.py): Callaway and Sant'Anna's
ATT(g, t) and their aggregations as the `differences` package computes them, for every base period and control
group; bootstrap bands over every cell; intervals that cover planted effects; the audit of a lab panel."""

import json

import numpy as np
import pytest
from memaudit.probes import _did as did
from memaudit.probes.profile import cohorts_of, profile

STEPS = [10, 20, 30, 40, 50, 60]
OPTIONS = [(base, control) for base in did.BASE_PERIODS for control in did.CONTROL_GROUPS]


def _panel(seed: int, n: int = 300, effect0: float = 0.5, decay: float = 0.5, noise: float = 1.0):
    """A synthetic panel: cohorts 1..5 (by checkpoint index), 30% never treated, a common trend, and a planted
    effect effect0 * decay**e at event time e >= 0."""
    rng = np.random.default_rng(seed)
    control = rng.random(n) < 0.3
    cohort = np.where(control, -1, rng.integers(1, len(STEPS), n))
    y = rng.normal(0, noise, (len(STEPS), n)) + np.linspace(0, 1, len(STEPS))[:, None] + rng.normal(0, 1, n)
    e = np.arange(len(STEPS))[:, None] - cohort[None, :]  # (checkpoints, samples) event time
    y += np.where(~control[None, :] & (e >= 0), effect0 * decay ** np.maximum(e, 0), 0.0)
    return y, cohort, ~control, control


def _differences(y, cohort, treated, steps=STEPS, base_period="varying", control_group="never_treated"):
    """The `differences` package's ATTgt, no covariates; cohorts as checkpoint indices into `steps`."""
    pd = pytest.importorskip("pandas")
    differences = pytest.importorskip("differences")
    n = y.shape[1]
    frame = pd.DataFrame({"id": np.repeat(np.arange(n), len(steps)), "time": np.tile(steps, n),
                          "y": y.T.reshape(-1),
                          "cohort": np.repeat([steps[g] if t else np.nan for g, t in zip(cohort, treated)],
                                              len(steps))}).set_index(["id", "time"])
    att = differences.ATTgt(data=frame, cohort_column="cohort", base_period=base_period)
    return att.fit(formula="y", est_method="reg", control_group=control_group, progress_bar=False)


def _close(ours: dict, theirs, key_of=int):
    """Every row of a `differences` table (estimate, standard error) equals ours at its key, to 1e-9 (a reference
    cell of the universal base period: theirs has no standard error, ours is 0)."""
    assert len(theirs) == len(ours)
    for key, row in theirs.iterrows():
        att, se = ours[key_of(key)]
        assert att == pytest.approx(row.iloc[0], abs=1e-9), key
        assert se == pytest.approx(0.0 if np.isnan(row.iloc[1]) else row.iloc[1], abs=1e-9), key


@pytest.mark.parametrize("base_period, control_group", OPTIONS)
def test_every_cell_and_aggregation_equals_the_differences_package(base_period, control_group):
    """ATT(g, t) and the event, calendar-time, cohort and overall aggregations, point estimates and analytic
    standard errors, for both base periods and both control groups (universal: the reference cells, ATT 0)."""
    y, cohort, treated, control = _panel(0)
    result = _differences(y, cohort, treated, base_period=base_period, control_group=control_group)
    mine = profile(y, cohort, treated, control, STEPS, draws=99, base_period=base_period, control_group=control_group)
    assert mine["base_period"] == base_period and mine["control_group"] == control_group
    cells = {(a["cohort_step"], a["step"]): (a["att"], a["se"]) for a in mine["att"]}
    _close(cells, result.to_pandas().droplevel(1), key_of=lambda k: (int(k[0]), int(k[1])))
    _close({p["e"] * 10: (p["att"], p["se"]) for p in mine["event_time"]}, result.aggregate("event"))
    _close({p["step"]: (p["att"], p["se"]) for p in mine["times"]}, result.aggregate("time"))
    _close({p["cohort_step"]: (p["att"], p["se"]) for p in mine["cohorts"]}, result.aggregate("cohort"))
    overall = result.aggregate("cohort", overall=True).iloc[0]
    assert mine["overall"] == pytest.approx(overall.iloc[0], abs=1e-9)
    assert mine["overall_se"] == pytest.approx(overall.iloc[1], abs=1e-9)
    if base_period == "universal":
        reference = [a for a in mine["att"] if a["step"] == a["base_step"]]
        assert reference and all(a["att"] == 0 and a["se"] == 0 and not a["significant"] for a in reference)


@pytest.mark.parametrize("base_period, control_group", OPTIONS)
def test_influence_functions_from_moments_equal_the_dense_ones(base_period, control_group):
    """The influence functions built from the groups' moments equal those written out sample by sample from the
    definition, and each ATT(g, t)'s bootstrap draws (from the per-group sums) equal the draws of the same cell
    as an aggregate of weight 1 (the other code path)."""
    y, cohort, treated, control = _panel(1, n=200)
    groups, yc = did.moments(y, cohort, treated, control)
    c = did.cells(groups, base_period, control_group)
    k = len(c.att)
    coef, const = did.coefficients(c, groups, did.Family(np.arange(k), np.eye(k), c.att, np.zeros((groups.never, k))))
    n = yc.shape[1]
    dense = np.zeros((n, k))  # (samples, cells)
    cohort_of = groups.base[np.minimum(groups.member, groups.never - 1)]
    for j in range(k):
        change = yc[c.t[j]] - yc[c.b[j]]
        member = groups.member == c.group[j]
        controls = (groups.member == groups.never) | ((groups.member < groups.never) & ~member & (cohort_of >= c.m[j]))
        dense[member, j] = n / member.sum() * (change[member] - change[member].mean())
        dense[controls, j] = -n / controls.sum() * (change[controls] - change[controls].mean())
    from_moments = np.einsum("tn,ntk->nk", yc, coef[groups.member]) + const[groups.member]
    assert np.abs(from_moments - dense).max() < 1e-9
    assert np.allclose(np.sqrt((dense ** 2).sum(axis=0)) / n, c.se, atol=1e-12)
    assert np.allclose(did.standard_errors(groups, coef, const), c.se, atol=1e-12)
    boot = did.bootstrap_sums(groups, yc, 50, seed=3)
    assert np.abs(did.cell_draws(boot, groups, c).T - did.family_draws(boot, groups, coef, const)).max() < 1e-12


def test_intervals_cover_planted_effects():
    """Instantaneous (0.5) and persistent (0.25 at e = 1) effects: the 95% intervals cover the truth in 92-98%
    of 200 seeded panels, and the estimates are unbiased."""
    cover0, cover1, estimates = 0, 0, []
    for seed in range(200):
        y, cohort, treated, control = _panel(seed)
        p = profile(y, cohort, treated, control, STEPS, draws=99, seed=seed)
        cover0 += p["instantaneous_lo"] <= 0.5 <= p["instantaneous_hi"]
        cover1 += p["persistent[e=1]_lo"] <= 0.25 <= p["persistent[e=1]_hi"]
        estimates.append(p["instantaneous"])
    assert 184 <= cover0 <= 196 and 184 <= cover1 <= 196, (cover0, cover1)
    assert abs(np.mean(estimates) - 0.5) < 0.02


def test_the_band_over_every_cell_covers_all_of_them_at_once_and_the_sup_test_holds_its_size():
    """The simultaneous band over all 25 ATT(g, t) covers every true value (0.5 * 0.5**e after training, 0 before)
    in 90-99% of 100 panels, wider than the pointwise interval; the sup-t pre-trend test rejects 1-10% of them."""
    covered, rejected = 0, 0
    for seed in range(100):
        y, cohort, treated, control = _panel(seed, n=600)
        p = profile(y, cohort, treated, control, STEPS, draws=499, seed=seed)
        truth = [0.5 * 0.5 ** ((STEPS.index(a["step"]) - STEPS.index(a["cohort_step"])))
                 if a["step"] >= a["cohort_step"] else 0.0 for a in p["att"]]
        covered += all(a["band_lo"] <= v <= a["band_hi"] for a, v in zip(p["att"], truth))
        rejected += p["pretrend_sup_p"] < 0.05
        assert p["att_band_critical"] > 1.96 and "att_band_note" not in p
    assert 90 <= covered <= 99 and 1 <= rejected <= 10, (covered, rejected)


def test_a_band_is_never_narrower_than_the_pointwise_interval():
    """One cell (two checkpoints, one cohort): the sup over one estimate is its own |z|, whose 95% quantile is
    about 1.96; when it falls below, the band is the pointwise interval and the report says so."""
    from memaudit.probes.profile import _critical

    draws = np.random.default_rng(0).normal(0, 1, (999, 1)) * 0.5  # a quantile of |z| below 1.96
    critical, note = _critical(draws, np.array([1.0]), 0.95, 1.959964)
    assert critical == 1.959964 and "below the pointwise" in note
    critical, note = _critical(draws, np.array([0.0]), 0.95, 1.959964)
    assert critical == 1.959964 and "no estimate has a bootstrap standard error" in note


def test_the_wald_test_holds_its_size_and_refuses_a_singular_covariance():
    """No effect before training: the Wald test of the 10 placebos rejects 5-8% of 200 panels of 1,500 samples.
    A cohort whose members all change alike makes the covariance singular: no statistic, a note."""
    rejected = 0
    for seed in range(200):
        y, cohort, treated, control = _panel(seed, n=1500)
        groups, _ = did.moments(y, cohort, treated, control)
        rejected += did.wald(did.cells(groups), groups)["pretrend_p"] < 0.05
    assert 4 <= rejected <= 16, rejected
    y, cohort, treated, control = _panel(0, n=1500)
    y[:, cohort == 4] = y[:, np.flatnonzero(cohort == 4)[:1]]  # cohort 4: one series, repeated
    result = profile(y, cohort, treated, control, STEPS, draws=99)
    assert result["pretrend_p"] is None and "singular" in result["pretrend_note"]


def test_with_about_as_many_placebos_as_members_per_cohort_the_event_time_test_holds_its_size():
    """Lesci et al.'s shape in small: 39 cohorts of 40 samples with up to 38 placebos each, 400 controls. No Wald
    test over every cell (its statistic would drift far above the chi-squared: a note says so); the Wald test of
    the 38 event-time placebos, each pooling every cohort, rejects 2-11% of 200 null panels at 5% (measured: 8.3%
    of 300)."""
    steps = list(range(40))
    cohort = np.concatenate([np.repeat(np.arange(1, 40), 40), np.full(400, -1)])
    rejected = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        y = rng.normal(0, 0.5, (40, len(cohort))) + rng.normal(0, 1, len(cohort))
        result = profile(y, cohort, cohort >= 1, cohort < 0, steps, draws=99)
        assert result["pretrend_p"] is None and "so no Wald statistic" in result["pretrend_note"]
        assert result["pretrend_event_df"] == 38
        rejected += result["pretrend_event_p"] < 0.05
    assert 4 <= rejected <= 22, rejected


@pytest.mark.parametrize("base_period", did.BASE_PERIODS)
def test_the_wald_statistic_from_blocks_equals_the_dense_one(base_period):
    """Never-treated controls: the statistic from the cohort blocks and the Woodbury identity (any number of
    placebos) equals the one from the dense covariance, to 1e-9 relative."""
    for seed in range(3):
        y, cohort, treated, control = _panel(seed, n=1500)
        groups, _ = did.moments(y, cohort, treated, control)
        c = did.cells(groups, base_period)
        placebos = np.flatnonzero(c.placebo)
        assert did.wald_by_blocks(c, groups, placebos) == pytest.approx(did.wald_dense(c, groups, placebos), rel=1e-9)


def test_cohorts_are_the_first_checkpoint_at_or_after_training():
    steps = np.array([0.0, 5, 10, 11, 40, np.nan])
    assert cohorts_of(steps, [0, 10, 20]).tolist() == [0, 1, 1, 2, 3, -1]


@pytest.fixture(scope="module")
def profile_lab(tmp_path_factory):
    """A one-epoch lab run (each sample seen once, a checkpoint every 4 updates), audited with --samples-out."""
    from memaudit.integrations.cli import main
    from memaudit.lab.config import parse_lab_config
    from memaudit.lab.train import run_lab

    root = tmp_path_factory.mktemp("profile")
    lab = parse_lab_config({"vocab_size": 300, "seq_len": 24, "n_samples": 48, "n_valid": 24, "n_special": 0,
                            "batch_size": 4, "epochs": 1, "lr": 0.01, "save_every_steps": 4,
                            "runs": [{"name": "base", "layers": 1, "width": 32, "heads": 2}],
                            "out": str(root / "lab")}, root)
    out = run_lab(lab)
    code = main(["run", str(out / "checkpoints.yaml"), "-k", "memorization", "--json", str(root / "r.json"),
                 "--samples-out", str(root / "rows"), "-q", "--html", str(root / "r.html")])
    return root, code


def test_a_lab_panel_equals_the_differences_package_on_the_parquet_rows(profile_lab):
    """The report's ATT(g, t) recomputed by `differences` from the --samples-out rows alone."""
    pd = pytest.importorskip("pandas")
    differences = pytest.importorskip("differences")
    root, code = profile_lab
    assert code in (0, 1)
    report = json.loads((root / "r.json").read_text())
    result = report["series"][0]["results"]["memorization_profile"]["train"]
    rows = pd.read_parquet(root / "rows")
    steps = sorted(rows.step.unique())
    rows = rows[rows.dataset.isin(["train", "valid"])].copy()
    rows["y"] = -rows.memorization_loss
    first = {s: next(c for c in steps if c >= s) for s in rows.seen_at_step.dropna().unique()}
    rows["cohort"] = rows.seen_at_step.map(first).where(rows.dataset == "train")
    rows = rows[~rows.cohort.eq(steps[0])]  # trained before the first checkpoint: no base period
    frame = rows.set_index(["sample_id", "step"])[["y", "cohort"]]
    fitted = differences.ATTgt(data=frame, cohort_column="cohort", base_period="varying").fit(
        formula="y", est_method="reg", control_group="never_treated", progress_bar=False).to_pandas()
    theirs = {(int(c), int(t)): row.iloc[0] for (c, _, t), row in fitted.iterrows()}
    ours = {(cell["cohort_step"], cell["step"]): cell["att"] for cell in result["att"]}
    assert ours.keys() == theirs.keys()
    assert all(ours[k] == pytest.approx(theirs[k], abs=1e-9) for k in ours)


def test_the_lab_profile_is_reported_gated_and_drawn(profile_lab, run_cli):
    root, _ = profile_lab
    report = json.loads((root / "r.json").read_text())
    result = report["series"][0]["results"]["memorization_profile"]["train"]
    assert result["n_treated"] == 48 and result["n_control"] == 24 and result["n_unknown_step"] == 0
    assert result["instantaneous_lo"] < result["instantaneous"] < result["instantaneous_hi"]
    assert result["event_time"][0]["e"] < 0 and result["pretrend_p"] is not None  # placebos are there
    page = (root / "r.html").read_text()
    assert "fig-profile" in page and "instantaneous" in page
    code, out, err = run_cli("show", root / "r.json")
    assert "memorization_profile" in out and "instantaneous" in out


def test_the_suffix_outcome_is_the_suffix_s_log_likelihood(profile_lab):
    """outcome: loglik_suffix reads memorization's per-sample suffix loss (the m tokens after the prefix)."""
    pd = pytest.importorskip("pandas")
    root, _ = profile_lab
    rows = pd.read_parquet(root / "rows")
    assert (rows.memorization_suffix_loss > 0).all() and not rows.memorization_suffix_loss.equals(rows.memorization_loss)


def test_a_profile_without_held_out_samples_is_refused_before_anything_loads(write_config, text_file, run_cli,
                                                                             tmp_path):
    config = write_config({"series": [{"name": "s", "local": str(tmp_path / "none")}],
                           "datasets": [{"name": "train", "path": str(text_file)}],
                           "probes": {"memorization_profile": {}}})
    code, _, err = run_cli("run", config)
    assert code == 2 and "no data set has role valid or holdout" in err


def test_the_profile_is_opt_in_and_counts_samples_without_a_training_step(basic_config, text_file, run_cli,
                                                                         tmp_path):
    valid = tmp_path / "valid.txt"
    valid.write_text(text_file.read_text()[3000:], encoding="utf-8")
    datasets = [{"name": "train", "path": str(text_file), "seq_len": 16, "max_samples": 8},
                {"name": "valid", "path": str(valid), "role": "valid", "seq_len": 16, "max_samples": 8}]
    code, _, err = run_cli("run", basic_config(datasets=datasets), "-k", "memorization", "--json", tmp_path / "a.json")
    assert code == 0, err
    assert "memorization_profile" not in json.loads((tmp_path / "a.json").read_text())["series"][0]["results"]
    config = basic_config(datasets=datasets, probes={"memorization_profile": {}})
    code, _, err = run_cli("run", config, "-k", "memorization", "--json", tmp_path / "b.json")
    result = json.loads((tmp_path / "b.json").read_text())["series"][0]["results"]["memorization_profile"]["train"]
    assert code == 0, err
    assert result["n_unknown_step"] == 8 and result["n_treated"] == 0 and "no trained sample" in result["note"]


def test_a_profile_of_one_checkpoint_says_why_there_is_no_estimate(make_series, text_file, write_config, run_cli,
                                                                   tmp_path):
    valid = tmp_path / "valid.txt"
    valid.write_text(text_file.read_text()[3000:], encoding="utf-8")
    config = write_config({"series": [{"name": "s", "local": str(make_series(steps=(1,)))}],
                           "datasets": [{"name": "train", "path": str(text_file), "seq_len": 16, "max_samples": 4},
                                        {"name": "valid", "path": str(valid), "role": "valid", "seq_len": 16,
                                         "max_samples": 4}],
                           "probes": {"memorization_profile": {}}})
    code, _, err = run_cli("run", config, "-k", "memorization", "--json", tmp_path / "r.json")
    result = json.loads((tmp_path / "r.json").read_text())["series"][0]["results"]["memorization_profile"]["train"]
    assert code == 0, err
    assert "at least 2 checkpoints" in result["note"]


def test_rank_and_entropy_outcomes_need_their_probe_and_then_give_a_profile(profile_lab, run_cli, write_config,
                                                                          tmp_path):
    import yaml

    root, _ = profile_lab
    raw = yaml.safe_load((root / "lab" / "checkpoints.yaml").read_text())
    raw["probes"]["memorization_profile"] = {"outcome": "rank"}
    for series in raw["series"]:
        series["local"] = str(root / "lab" / series["local"])
    raw["datasets"] = [{**d, "path": str(root / "lab" / d["path"])} for d in raw["datasets"]]
    code, _, err = run_cli("run", write_config(raw, name="rank.yaml"))
    assert code == 2 and "add 'sample_outcomes: {}'" in err
    raw["probes"]["sample_outcomes"] = {}
    code, _, err = run_cli("run", write_config(raw, name="rank2.yaml"), "-k", "memorization or outcomes",
                           "--json", tmp_path / "r.json")
    assert code in (0, 1), err
    result = json.loads((tmp_path / "r.json").read_text())["series"][0]["results"]["memorization_profile"]["train"]
    assert result["outcome"] == "rank" and result["instantaneous"] is not None


@pytest.mark.parametrize("every", [2, 3, 5, 10])
def test_macro_cohorts_measure_a_planted_effect_from_before_their_members_trained(every):
    """A constant effect of 1.0 from each sample's own training on, cohorts joined in blocks of `every` checkpoint
    intervals: every post-training estimate is ~1.0 (a base period inside the block would halve it), and the
    block the series ends in is kept (cohort = the last checkpoint), none counted as trained after the last."""
    from memaudit.probes.profile import macro_cohorts

    steps = list(range(10, 80, 10))  # 7 checkpoints
    rng = np.random.default_rng(every)
    n = 3000
    control = rng.random(n) < 0.3
    cohort = np.where(control, -1, rng.integers(1, len(steps), n))
    y = rng.normal(0, 0.1, (len(steps), n)) + np.linspace(0, 1, len(steps))[:, None]
    e = np.arange(len(steps))[:, None] - cohort[None, :]
    y += np.where(~control[None, :] & (e >= 0), 1.0, 0.0)
    joined, base = macro_cohorts(cohort, every, len(steps))
    assert set(np.unique(joined[~control])) == set(base) and max(base) == len(steps) - 1
    assert all(base[g] < g and base[g] % every == 0 for g in base)
    result = profile(y, joined, ~control, control, steps, draws=99, base=base)
    effects = [a for a in result["att"] if a["step"] >= a["cohort_step"]]
    assert effects and all(abs(a["att"] - 1.0) < 0.05 for a in effects), effects
    assert result["instantaneous"] == pytest.approx(1.0, abs=0.03)
    placebos = [a for a in result["att"] if a["step"] < a["cohort_step"]]
    assert all(abs(a["att"]) < 0.05 for a in placebos)


def _stepped(path, tokenizer, steps, seed):
    rng = np.random.default_rng(seed)
    path.write_text("".join(json.dumps({"id": f"{path.stem}{i}", "tokens": rng.integers(0, len(tokenizer), 16).tolist(),
                                        **({"seen_at_step": s} if s is not None else {})}) + "\n"
                            for i, s in enumerate(steps)))
    return path


def test_held_out_samples_with_a_training_step_are_no_controls_and_a_too_short_suffix_says_so(
        make_series, tokenizer, write_config, run_cli, tmp_path):
    train = _stepped(tmp_path / "train.jsonl", tokenizer, [2, 2, 4, 4], 0)
    valid = _stepped(tmp_path / "valid.jsonl", tokenizer, [None, None, None], 1)
    seen = _stepped(tmp_path / "seen.jsonl", tokenizer, [2, 4], 2)  # "held out", yet its records say when it trained
    config = write_config({"series": [{"name": "s", "local": str(make_series(steps=(1, 2, 4)))}],
                           "datasets": [{"name": "train", "path": str(train), "seq_len": 16},
                                        {"name": "valid", "path": str(valid), "role": "valid", "seq_len": 16},
                                        {"name": "seen", "path": str(seen), "role": "valid", "seq_len": 16}],
                           "probes": {"memorization": {"k": 4, "m": 4}, "memorization_profile": {}},
                           "run": {"batch_size": 4}})
    code, _, err = run_cli("run", config, "-k", "memorization", "--json", tmp_path / "r.json")
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())["series"][0]["results"]["memorization_profile"]["train"]
    assert result["n_control"] == 3 and result["n_control_trained"] == 2 and result["n_treated"] == 4
    raw = json.loads(json.dumps(yaml_of(config)))
    raw["probes"] = {"memorization": {"k": 10, "m": 10}, "memorization_profile": {"outcome": "loglik_suffix"}}
    code, _, err = run_cli("run", write_config(raw, name="suffix.yaml"), "-k", "memorization", "--json",
                           tmp_path / "s.json")
    assert code == 0, err
    result = json.loads((tmp_path / "s.json").read_text())["series"][0]["results"]["memorization_profile"]["train"]
    assert "shorter than memorization's k + m" in result["note"] and "instantaneous" not in result


def yaml_of(path):
    import yaml

    return yaml.safe_load(path.read_text())


def _synthetic_panel(steps, seed=0, n_train=600, n_valid=200):
    """A Panel of `steps` checkpoints: trained samples with training steps between the first and last checkpoint
    and an effect of 0.5 from their step on; never-trained controls; a common trend."""
    from types import SimpleNamespace

    from memaudit.engine.panel import Panel

    rng = np.random.default_rng(seed)
    trained_at = rng.integers(steps[0] + 1, steps[-1] + 1, n_train).astype(np.float64)
    samples = {"train": SimpleNamespace(ids=range(n_train), steps=trained_at),
               "valid": SimpleNamespace(ids=range(n_valid), steps=None)}
    panel = Panel(samples, {"memorization"})
    level_train, level_valid = rng.normal(0, 1, n_train), rng.normal(0, 1, n_valid)
    for t, step in enumerate(steps):
        y_train = level_train + 0.1 * t + rng.normal(0, 0.2, n_train) + np.where(step >= trained_at, 0.5, 0.0)
        y_valid = level_valid + 0.1 * t + rng.normal(0, 0.2, n_valid)
        panel.add(f"step-{step}", step, {"memorization": {"train": {"loss": -y_train}, "valid": {"loss": -y_valid}}})
    return panel, samples


def _profile(panel, **params):
    from types import SimpleNamespace

    from memaudit.probes.profile import memorization_profile

    datasets = [SimpleNamespace(name="train", role="train"), SimpleNamespace(name="valid", role="valid")]
    return memorization_profile.fn(panel, {}, {}, SimpleNamespace(name="s"), datasets, None,
                                   **{"draws": 99, **params})["train"]


def _cut(panel, samples, steps):
    """The same samples' values at the checkpoints `steps` only."""
    from memaudit.engine.panel import Panel

    cut = Panel(samples, {"memorization"})
    for step in steps:
        t = panel.steps.index(step)
        cut.add(f"step-{step}", step, {"memorization": {name: {"loss": panel.values("memorization", "loss", name)[t]}
                                                        for name in samples}})
    return cut


def test_a_step_window_is_the_profile_of_the_panel_cut_to_it_and_residual_at_picks_the_checkpoint():
    steps = [10, 20, 30, 40, 50, 60, 70]
    panel, samples = _synthetic_panel(steps)
    windowed = _profile(panel, steps={"max": 40})
    cut = _profile(_cut(panel, samples, [10, 20, 30, 40]))
    for key in ("instantaneous", "instantaneous_se", "residual", "overall", "n_treated", "n_after_last", "att",
                "pretrend_p"):
        assert windowed[key] == cut[key], key
    assert windowed["window"] == {"max": 40} and windowed["residual_at"] == 40 and windowed["n_after_last"] > 0
    listed = _profile(panel, steps=[10, 30, 50, 70])
    assert listed["att"] == _profile(_cut(panel, samples, [10, 30, 50, 70]))["att"]
    early = _profile(panel, steps={"max": 40}, residual_at=30)
    assert early["residual_at"] == 30
    assert early["residual"] == pytest.approx(_profile(_cut(panel, samples, [10, 20, 30]))["residual"], abs=1e-12)
    assert early["residual"] != windowed["residual"]


@pytest.mark.parametrize("params, words", [
    ({"steps": {"max": 10}}, "at least 2 checkpoints with training steps in the window"),
    ({"cohort_steps": 100_000}, "no trained sample has a checkpoint before and after its training step"),
    ({"steps": {"max": 40}, "residual_at": 50}, "residual_at: 50 is no checkpoint step of the profile"),
])
def test_a_window_that_cannot_be_estimated_says_why(params, words):
    panel, _ = _synthetic_panel([10, 20, 30, 40, 50])
    result = _profile(panel, **params)
    assert words in result["note"] and "instantaneous" not in result


@pytest.mark.parametrize("value", [{"max": -1}, {"maximum": 3}, {"max": "10"}, "95000", [1.5]])
def test_bad_step_windows_are_refused_before_anything_loads(value):
    from memaudit.engine.registry import collect, standard_probe_dir, validate_params
    from memaudit.errors import ConfigError

    probe = next(p for p in collect([standard_probe_dir()]) if p.name == "memorization_profile")
    with pytest.raises(ConfigError, match="bad parameter value: steps"):
        validate_params(probe, {"steps": value})
    assert validate_params(probe, {"steps": {"max": 95000}}) == {"steps": {"max": 95000}}


@pytest.mark.parametrize("params", [{"base_period": "both"}, {"control_group": "not_yet"}, {"heatmap": True},
                                    {"base_period": None}, {"control_group": ["never_treated"]}])
def test_bad_estimator_options_are_refused_before_anything_loads(params):
    from memaudit.engine.registry import collect, standard_probe_dir, validate_params
    from memaudit.errors import ConfigError

    probe = next(p for p in collect([standard_probe_dir()]) if p.name == "memorization_profile")
    with pytest.raises(ConfigError, match=f"bad parameter value: {next(iter(params))}"):
        validate_params(probe, params)


def test_step_cohorts_equal_the_differences_package_on_upstream_s_cohort_rule():
    """Lesci et al.'s rule: cohort = ceil(training step / 1000) * 1000, checkpoints every 1,000 steps; the ATT(g, t)
    and their standard errors equal `differences` on a panel whose cohorts are built that way."""
    pd = pytest.importorskip("pandas")
    differences = pytest.importorskip("differences")
    from memaudit.probes.profile import step_cohorts

    steps = [1000 * k for k in range(1, 7)]
    rng = np.random.default_rng(5)
    n = 400
    control = rng.random(n) < 0.3
    trained_at = np.where(control, np.nan, rng.integers(1001, 6001, n)).astype(np.float64)
    cohort, base = step_cohorts(trained_at, steps, 1000)
    assert base == {g: g - 1 for g in base}  # checkpoints at every multiple: the base is the checkpoint before
    y = rng.normal(0, 1, (len(steps), n)) + np.linspace(0, 1, len(steps))[:, None]
    y += np.where(~control[None, :] & (np.arange(len(steps))[:, None] >= cohort[None, :]), 0.4, 0.0)
    treated = ~control & (cohort >= 1)
    upstream = np.ceil(trained_at / 1000) * 1000  # compute_attgt.py's cohort, in steps
    frame = pd.DataFrame({"id": np.repeat(np.arange(n), len(steps)), "time": np.tile(steps, n),
                          "y": y.T.reshape(-1),
                          "cohort": np.repeat(np.where(treated, upstream, np.nan), len(steps))}).set_index(["id", "time"])
    table = differences.ATTgt(data=frame, cohort_column="cohort", base_period="varying").fit(
        formula="y", est_method="reg", control_group="never_treated", progress_bar=False).to_pandas()
    theirs = {(int(c), int(t)): (row.iloc[0], row.iloc[1]) for (c, _, t), row in table.iterrows()}
    ours = did.cells(did.moments(y, cohort, treated, control, base)[0])
    assert len(ours.att) == len(theirs)
    for g, t, att, se in zip(ours.g, ours.t, ours.att, ours.se):
        assert att == pytest.approx(theirs[(steps[g], steps[t])][0], abs=1e-9)
        assert se == pytest.approx(theirs[(steps[g], steps[t])][1], abs=1e-9)


def test_step_cohorts_with_sparse_checkpoints_measure_from_before_every_member_trained():
    """Checkpoints every 1,500 steps, cohorts of 1,000: a cohort whose steps straddle a checkpoint is measured from
    the checkpoint before all of it (a planted effect of 1.0 reads 1.0); samples before the first checkpoint have
    no base, those after the last are after it."""
    from memaudit.probes.profile import step_cohorts

    steps = [0, 1500, 3000, 4500, 6000]
    rng = np.random.default_rng(9)
    n = 3000
    control = rng.random(n) < 0.3
    trained_at = np.where(control, np.nan, rng.integers(1, 7001, n)).astype(np.float64)
    cohort, base = step_cohorts(trained_at, steps, 1000)
    assert base[2] == 0  # cohort 2000 (steps 1001-2000) is treated at 3000, measured from 0, not from 1500
    assert (cohort[~control & (trained_at > 6000)] == len(steps)).all()
    y = rng.normal(0, 0.1, (len(steps), n)) + np.linspace(0, 1, len(steps))[:, None]
    y += np.where(~control[None, :] & (np.asarray(steps)[:, None] >= trained_at[None, :]), 1.0, 0.0)
    treated = ~control & (cohort >= 1) & (cohort < len(steps))
    c = did.cells(did.moments(y, cohort, treated, control, base)[0])
    assert c.post.any() and (np.abs(c.att[c.post] - 1.0) < 0.05).all()


def test_cohort_steps_and_cohort_every_together_are_refused(basic_config, text_file, run_cli, tmp_path):
    valid = tmp_path / "valid.txt"
    valid.write_text(text_file.read_text()[3000:], encoding="utf-8")
    datasets = [{"name": "train", "path": str(text_file), "seq_len": 16},
                {"name": "valid", "path": str(valid), "role": "valid", "seq_len": 16}]
    config = basic_config(datasets=datasets, probes={"memorization_profile": {"cohort_steps": 1000,
                                                                              "cohort_every": 2}})
    code, _, err = run_cli("run", config)
    assert code == 2 and "not both" in err


def test_series_on_the_same_panel_report_the_correlation_of_their_effects():
    """Lesci et al.'s finding (iii): a second series on the same samples and checkpoints (the first's outcomes
    plus noise) correlates with it; one audited at other checkpoints is named with a note, not a number."""
    from types import SimpleNamespace

    from memaudit.engine.panel import Panel
    from memaudit.probes.profile import memorization_profile

    steps = [10, 20, 30, 40, 50]
    first, samples = _synthetic_panel(steps, seed=0)
    rng = np.random.default_rng(1)
    second = Panel(samples, {"memorization"})
    for t, step in enumerate(steps):
        second.add(f"step-{step}", step, {"memorization": {
            name: {"loss": first.values("memorization", "loss", name)[t] + rng.normal(0, 0.05, len(samples[name].ids))}
            for name in samples}})
    elsewhere = _cut(first, samples, [10, 30, 50])
    datasets = [SimpleNamespace(name="train", role="train"), SimpleNamespace(name="valid", role="valid")]
    result = memorization_profile.fn(first, {"a": first, "b": second, "c": elsewhere}, {}, SimpleNamespace(name="a"),
                                     datasets, None, draws=99)["train"]
    assert set(result["att_correlation"]) == {"b", "c"}
    assert 0.8 < result["att_correlation"]["b"]["pearson"] < 1.0 and result["att_correlation"]["b"]["n_cells"] == 10
    assert "not the same design" in result["att_correlation"]["c"]["note"]


def test_the_heat_map_can_keep_only_cells_whose_band_excludes_zero():
    panel, _ = _synthetic_panel([10, 20, 30, 40, 50])
    result = _profile(panel, heatmap="significant")
    assert result["heatmap"] == "significant"
    assert result["n_significant"] == sum(a["significant"] for a in result["att"]) > 0
    assert all(a["significant"] == (a["band_lo"] > 0 or a["band_hi"] < 0) for a in result["att"])


def test_a_run_of_two_series_on_one_panel_correlates_their_profiles(profile_lab, run_cli, write_config, tmp_path):
    """The same lab series audited twice under two names (its ledger with each): each reports a correlation of 1
    with the other, through the run's ledgers; the universal base period and not-yet-treated controls run too."""
    root, _ = profile_lab
    raw = yaml_of(root / "lab" / "checkpoints.yaml")
    raw["series"] = [{"name": name, "local": str(root / "lab" / "base")} for name in ("base", "again")]
    raw["datasets"] = [{**d, "path": str(root / "lab" / d["path"].replace("{series}", "base"))}
                       for d in raw["datasets"]]
    raw["probes"]["memorization_profile"] = {"base_period": "universal", "control_group": "not_yet_treated",
                                             "heatmap": "significant"}
    code, _, err = run_cli("run", write_config(raw, name="two.yaml"), "-k", "memorization", "--json",
                           tmp_path / "r.json", "--html", tmp_path / "r.html")
    assert code in (0, 1), err
    series = json.loads((tmp_path / "r.json").read_text())["series"]
    results = [s["results"]["memorization_profile"]["train"] for s in series]
    names = [s["name"] for s in series]
    for result, other in zip(results, reversed(names)):
        assert result["control_group"] == "not_yet_treated" and result["base_period"] == "universal"
        assert result["att_correlation"][other]["pearson"] == pytest.approx(1.0, abs=1e-12)
    assert "fig-profile" in (tmp_path / "r.html").read_text()
