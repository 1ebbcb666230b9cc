"""memaudit/inputs/identifiers.py and probes/unique_ids.py."""

import numpy as np
import pytest

from memaudit.engine.registry import collect, standard_probe_dir
from memaudit.inputs.identifiers import identifier_mask
from memaudit.inputs.tagging import TAGS
from memaudit.results.schema import CheckpointResult, DatasetInfo, SeriesResult

PROBES = {p.name: p for p in collect([standard_probe_dir()])}


def _mask_of(tokenizer, text, pos_tags=None):
    ids = np.array([tokenizer(text)["input_ids"]])
    mask = identifier_mask(ids, tokenizer, pos_tags)[0]
    pieces = [tokenizer.decode([t]) for t in ids[0][1:]]
    return {p.strip() for p, m in zip(pieces, mask) if m and p.strip()}, mask


@pytest.mark.parametrize("text, expected", [
    ("write to jane.doe@example.org today", "jane"),
    ("see https://example.org/page for more", "https"),
    ("it cost 1,200 pounds in 1999", "200"),
    ("the key is a3f9c2e7b1d4 here", "a"),
])
def test_regex_identifiers_are_found(tokenizer, text, expected):
    found, mask = _mask_of(tokenizer, text)
    assert mask.any() and any(expected in piece or piece in expected for piece in found)


def test_plain_text_has_no_identifiers_without_tags(tokenizer):
    _, mask = _mask_of(tokenizer, "the cat sat on the mat and looked at the sea")
    assert not mask.any()


def test_proper_nouns_count_when_spacy_tags_are_given(tokenizer):
    ids = np.array([tokenizer("the river flows past the old town of Bristol")["input_ids"]])
    tags = np.full((1, ids.shape[1] - 1), TAGS.index("NOUN"), dtype=np.int8)
    tags[0, -1] = TAGS.index("PROPN")
    assert not identifier_mask(ids, tokenizer)[0].any()
    assert identifier_mask(ids, tokenizer, tags)[0][-1]


def test_identifier_groups_on_hand_built_products():
    hits = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=bool)
    id_mask = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]], dtype=bool)
    out = PROBES["identifiers"].fn(hits, id_mask, None)
    assert out["n_with_ids"] == 2 and out["n_without_ids"] == 1
    assert out["M_with_ids"] == pytest.approx(6 / 8) and out["M_without_ids"] == pytest.approx(1 / 4)
    assert out["M_id_tokens"] == pytest.approx(3 / 3)
    assert out["M_other_tokens"] == pytest.approx(3 / 5)
    assert out["id_token_share"] == pytest.approx(3 / 12)


class _Ledger:
    def __init__(self, *kinds, lab_runs=({"ids": "prefix"},)):
        self.interventions = [type("I", (), {"kind": k})() for k in kinds]
        self.lab_runs, self.run = list(lab_runs), {}


def test_unique_ids_leaves_out_the_targets_runs_do_not_share():
    hits = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=bool)
    train = DatasetInfo(name="train", role="train", path="-", seq_len=5, n_samples=2, n_tokens=10, sha256="x")
    ids = PROBES["unique_ids"].fn(hits, train, _Ledger("unique_ids"))
    base = PROBES["unique_ids"].fn(hits, train, _Ledger())
    control = PROBES["unique_ids"].fn(hits, train, _Ledger("vocab_control"))
    assert ids == {"M_shared": pytest.approx(3 / 6), "run_kind": "ids"}  # first target left out
    assert base == {"M_shared": pytest.approx(5 / 6), "run_kind": "baseline"}  # last target left out
    assert control["run_kind"] == "control"
    assert PROBES["unique_ids"].fn(hits, train, None) == {}
    assert PROBES["unique_ids"].fn(hits, train, _Ledger(lab_runs=[{"ids": "none"}])) == {}  # no ID experiment


def _series(name, ids, curve):
    ckpts = [CheckpointResult(name=f"step-{s}", step=s, location="-",
                              results={"unique_ids": {"train": {"M_shared": m, "run_kind": ids}}})
             for s, m in zip((0, 10, 20, 30), curve)]
    return SeriesResult(name=name, source="local:-", tokenizer="t", checkpoints=ckpts,
                        lab_run={"layers": 2, "width": 64, "heads": 2,
                                 "ids": {"baseline": "none", "ids": "prefix", "control": "control"}[ids]})


def test_gain_over_the_same_size_baseline():
    base = _series("b", "baseline", [0.0, 0.3, 0.6, 0.9])
    fast = _series("i", "ids", [0.0, 0.5, 0.9, 1.0])
    train = DatasetInfo(name="train", role="train", path="-", seq_len=5, n_samples=2, n_tokens=10, sha256="x")
    out = PROBES["unique_ids_series"].fn(fast.checkpoints, fast, [base, fast], [train], taus=[0.5, 0.9])["train"]
    assert out["baseline"] == "b" and out["run_kind"] == "ids"
    assert out["T_step@0.5"] == 10 and out["gain_T_step@0.5"] == 10
    assert out["T_step@0.9"] == 20 and out["gain_T_step@0.9"] == 10
    assert out["gain_M_mean"] == pytest.approx((0 + 0.2 + 0.3 + 0.1) / 4)
