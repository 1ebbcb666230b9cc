"""memaudit/engine/identity.py: every input that decides a result is part of its journal and cache keys.

Each test changes exactly one input between two runs and asserts that exactly the affected results
are computed again (and that the others still come from the journal or the products cache).
"""

import json
import shutil

import pytest
import yaml

from memaudit.engine.identity import probe_fingerprint, scoring_settings
from memaudit.inputs.ledger import Ledger

PROBES = '''from memaudit import probe

def _scale():
    return 1.0


@probe(metrics={"v": "mean hit"})
def alpha(hits):
    return {"v": float(hits.mean())}


@probe(metrics={"v": "mean logprob, scaled"})
def beta(logprobs):
    return {"v": float(logprobs.mean()) * _scale()}
'''


@pytest.fixture
def audit(tmp_path, make_series, corpus_text, run_cli):
    """A self-contained audit folder (series, data, probes, yaml with relative paths) and a runner that
    returns the report's single series."""
    root = tmp_path / "audit"
    series = make_series("series", steps=(1, 2))
    shutil.move(series, root / "series")
    (root / "data").mkdir()
    (root / "data" / "train.txt").write_text(corpus_text[:3000], encoding="utf-8")
    (root / "data" / "valid.txt").write_text(corpus_text[3000:6000], encoding="utf-8")
    (root / "probes").mkdir()
    (root / "probes" / "mine.py").write_text(PROBES, encoding="utf-8")
    config = {"series": [{"name": "s", "local": "series"}],
              "datasets": [{"name": "train", "path": "data/train.txt", "seq_len": 32, "max_samples": 8},
                           {"name": "valid", "path": "data/valid.txt", "seq_len": 32, "max_samples": 8,
                            "role": "valid"}],
              "probe_paths": ["probes"], "select": "alpha or beta or memorization", "run": {"batch_size": 4}}
    (root / "checkpoints.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")

    def run(*args, folder=None):
        folder = folder or root
        out = tmp_path / "report.json"
        code, _, err = run_cli("run", folder / "checkpoints.yaml", "--json", out, *args)
        assert code == 0, err
        return json.loads(out.read_text())["series"][0]

    run.root = root
    return run


def _reused(series) -> list[set[str]]:
    return [set(c["probes_from_journal"]) for c in series["checkpoints"]]


def _batches(series) -> int:
    return sum(c["n_forward_batches"] for c in series["checkpoints"])


ALL = {"alpha", "beta", "memorization"}


def test_an_unchanged_rerun_comes_whole_from_the_journal(audit):
    first = audit()
    assert _reused(first) == [set(), set()] and _batches(first) > 0
    again = audit()
    assert _reused(again) == [ALL, ALL] and _batches(again) == 0
    assert all(c["from_journal"] for c in again["checkpoints"])
    assert [c["results"] for c in again["checkpoints"]] == [c["results"] for c in first["checkpoints"]]


def test_changed_data_content_under_the_same_path_is_scored_again(audit):
    first = audit()
    path = audit.root / "data" / "train.txt"
    path.write_text(path.read_text(encoding="utf-8")[::-1], encoding="utf-8")  # same path, other text
    second = audit()
    assert _reused(second) == [set(), set()]
    # only the changed data set goes through the model: train's products, not valid's
    assert 0 < _batches(second) < _batches(first)
    assert second["checkpoints"][0]["results"]["memorization"]["train"]["loss"] != \
        first["checkpoints"][0]["results"]["memorization"]["train"]["loss"]
    assert second["checkpoints"][0]["results"]["memorization"]["valid"] == \
        first["checkpoints"][0]["results"]["memorization"]["valid"]


def test_an_edited_probe_reruns_alone(audit):
    audit()
    probes = audit.root / "probes" / "mine.py"
    probes.write_text(PROBES.replace('float(hits.mean())}', 'float(hits.mean()) + 1}'), encoding="utf-8")
    second = audit()
    assert _reused(second) == [ALL - {"alpha"}] * 2 and _batches(second) == 0  # products from the cache
    assert second["checkpoints"][0]["results"]["alpha"]["train"]["v"] >= 1  # the edited code ran


def test_an_edited_helper_reruns_the_probe_that_calls_it(audit):
    audit()
    probes = audit.root / "probes" / "mine.py"
    probes.write_text(PROBES.replace("return 1.0", "return 2.0"), encoding="utf-8")
    assert _reused(audit()) == [ALL - {"beta"}] * 2


def test_a_changed_probe_parameter_reruns_that_probe_alone(audit):
    audit()
    config = yaml.safe_load((audit.root / "checkpoints.yaml").read_text())
    config["probes"] = {"memorization": {"k": 8, "m": 8}}
    (audit.root / "checkpoints.yaml").write_text(yaml.safe_dump(config))
    second = audit()
    assert _reused(second) == [{"alpha", "beta"}] * 2
    assert second["checkpoints"][0]["results"]["memorization"]["train"]["extractable"] is not None


def test_another_dtype_scores_again(audit):
    audit()
    second = audit("--dtype", "bfloat16")
    assert _reused(second) == [set(), set()] and _batches(second) > 0


def test_the_same_audit_from_another_folder_reuses_results_but_reports_its_own_location(audit, tmp_path):
    first = audit()
    other = tmp_path / "elsewhere"
    shutil.copytree(audit.root, other)
    moved = audit(folder=other)
    assert _reused(moved) == [ALL, ALL]  # same weights, same data: the same results
    assert all(str(other) in c["location"] for c in moved["checkpoints"])
    assert [c["results"] for c in moved["checkpoints"]] == [c["results"] for c in first["checkpoints"]]
    (other / "data" / "valid.txt").write_text("other text entirely. " * 200, encoding="utf-8")
    assert _reused(audit(folder=other)) == [set(), set()]  # that folder's data differ: computed afresh


def test_new_sample_ids_with_the_same_tokens_rerun_the_probes_without_a_forward_pass(audit, tokenizer):
    ids = tokenizer(audit.root.joinpath("data", "train.txt").read_text(), add_special_tokens=False)["input_ids"]
    lines = [json.dumps({"id": f"a{i}", "tokens": ids[i * 32:(i + 1) * 32]}) for i in range(8)]
    (audit.root / "data" / "train.jsonl").write_text("\n".join(lines))
    config = yaml.safe_load((audit.root / "checkpoints.yaml").read_text())
    config["datasets"][0]["path"] = "data/train.jsonl"
    (audit.root / "checkpoints.yaml").write_text(yaml.safe_dump(config))
    audit()
    (audit.root / "data" / "train.jsonl").write_text("\n".join(line.replace('"a', '"b') for line in lines))
    second = audit()
    assert _reused(second) == [set(), set()] and _batches(second) == 0


def test_a_changed_ledger_reruns_the_probes(audit):
    ledger = Ledger(series="s", n_params=1, steps_per_epoch=1, epochs=2, updates=[], epoch_end_steps=[1, 2])
    (audit.root / "series" / "ledger.json").write_text(ledger.model_dump_json())
    audit()
    (audit.root / "series" / "ledger.json").write_text(ledger.model_copy(update={"steps_per_epoch": 2}).model_dump_json())
    second = audit()
    assert _reused(second) == [set(), set()] and _batches(second) == 0


def test_selecting_fewer_probes_keeps_the_others_in_the_journal(audit):
    audit()
    audit("-k", "alpha")
    assert _reused(audit()) == [ALL, ALL]


def test_mask_settings_are_part_of_the_key_for_masked_models_only():
    from memaudit.inputs.config import RunConfig

    a, b = RunConfig(), RunConfig(mask_seed=3)
    assert scoring_settings(a, "cpu", "causal") == scoring_settings(b, "cpu", "causal")
    assert scoring_settings(a, "cpu", "masked") != scoring_settings(b, "cpu", "masked")
    assert scoring_settings(a, "cpu", "causal") != scoring_settings(a, "cuda:0", "causal")
    assert scoring_settings(a, "cuda:0", "causal") == scoring_settings(a, "cuda:1", "causal")


def test_probe_fingerprint_follows_code_and_parameters():
    namespace: dict = {}
    exec("K = 2\ndef helper(x):\n    return x * K\ndef p(hits, k=1):\n    return helper(k)\n", namespace)
    before = probe_fingerprint(namespace["p"], {"k": 1})
    assert probe_fingerprint(namespace["p"], {"k": 2}) != before
    exec("K = 3", namespace)  # a module constant the probe reads through its helper
    assert probe_fingerprint(namespace["p"], {"k": 1}) != before


def test_a_probe_helper_imported_from_another_probe_module_is_part_of_its_key():
    """memorized_strings calls memorization's extractability helper: the standard probes are outside the
    engine fingerprint, so the helper's code must be in memorized_strings' own key."""
    from memaudit.engine.identity import _code_of
    from memaudit.engine.registry import collect, standard_probe_dir

    probes = {p.name: p for p in collect([standard_probe_dir()])}
    code = "\n".join(_code_of(probes["memorized_strings"].fn))
    assert "def extractable_samples" in code and "def log_pz" in code


def test_standard_probes_are_one_module_each_and_their_fingerprint_follows_the_shared_measures():
    import sys

    import memaudit.probes.memorization as memorization
    from memaudit.engine.identity import _code_of
    from memaudit.engine.registry import collect, standard_probe_dir

    probes = {p.name: p for p in collect([standard_probe_dir()])}
    assert probes["memorization"] is memorization.memorization  # the module a probe imports is the one collected
    import re

    standard = "memaudit_collected_" + re.sub(r"\W", "_", str(standard_probe_dir().resolve()))
    assert not [m for m in sys.modules if m.startswith(standard)]  # never loaded a second time from its file
    code = "\n".join(_code_of(probes["memorization"].rows))
    assert "memaudit.measures.extractable_samples" in code  # a change there changes memorization's journal keys
    assert "memaudit.measures.roc_auc" in "\n".join(_code_of(probes["twin"].fn))
