"""`samples: records`: whole records of any length, scored as lm-evaluation-harness scores them (its
`loglikelihood_rolling`, word and byte perplexity), padded in batches without changing a single product."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from conftest import tiny_model

WINDOW = 16


def passages(corpus_text: str, n: int = 9) -> list[str]:
    """Paragraphs of varied length: a few tokens to several windows."""
    paras = [p.strip() for p in corpus_text.split("\n") if p.strip()]
    return [paras[i][: 40 + 90 * (i % 5)] for i in range(n)]


def records_samples(tokenizer, texts, **settings):
    from memaudit.inputs.config import DatasetConfig
    from memaudit.inputs.data import load_samples

    config = DatasetConfig(name="passages", path="passages.jsonl", samples="records", seq_len=WINDOW, **settings)
    return load_samples(config, tokenizer, records=texts)


def test_loglikelihood_and_perplexities_equal_lm_eval(tokenizer, corpus_text):
    """Per passage, memaudit's log-likelihood equals lm-eval's loglikelihood_rolling with the same model and window
    (passages up to ~7 windows long), and its word and byte perplexities and bits per byte equal lm-eval's
    aggregations of the same documents."""
    from lm_eval.api.instance import Instance
    from lm_eval.api.metrics import bits_per_byte, weighted_perplexity
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.models.huggingface import HFLM

    from memaudit import audit_model

    model, docs = tiny_model("gpt_neox", len(tokenizer), seed=3), passages(corpus_text)
    result = audit_model(model, tokenizer, {"passages": {"data": [{"text": d} for d in docs], "samples": "records",
                                                         "seq_len": WINDOW}},
                         probes=["perplexity"], params={"perplexity": {"per_sample": True}}, batch_size=3)
    mine = result.results["perplexity"]["passages"]
    lm = HFLM(pretrained=model, tokenizer=tokenizer, max_length=WINDOW, batch_size=2, device="cpu")
    theirs = lm.loglikelihood_rolling([Instance(request_type="loglikelihood_rolling", doc={}, arguments=(d,), idx=i)
                                       for i, d in enumerate(docs)])
    assert max(len(tokenizer(d)["input_ids"]) for d in docs) > 5 * WINDOW  # several rolling windows
    np.testing.assert_allclose(mine["samples"]["loglikelihood"], theirs, atol=1e-4, rtol=0)
    words = [(ll, ConfigurableTask.count_words(d)) for ll, d in zip(theirs, docs)]
    byte_items = [(ll, ConfigurableTask.count_bytes(d)) for ll, d in zip(theirs, docs)]
    assert mine["word_perplexity"] == pytest.approx(weighted_perplexity(words), rel=1e-4)
    assert mine["byte_perplexity"] == pytest.approx(weighted_perplexity(byte_items), rel=1e-4)
    assert mine["bits_per_byte"] == pytest.approx(bits_per_byte(byte_items), rel=1e-4)
    assert mine["n_words"] == sum(w for _, w in words) and mine["n_bytes"] == sum(b for _, b in byte_items)


@pytest.mark.parametrize("fused", [True, False])
def test_padded_batches_equal_each_record_alone(tokenizer, corpus_text, fused):
    """Records of varied length scored padded in batches give, position by position, what each gives alone (a batch
    of one, no padding); every position past a record's end is padding (NaN, False, 0) and never a product."""
    from memaudit.engine.forward import score_records

    model = tiny_model("gpt2", len(tokenizer), seed=1)
    s = records_samples(tokenizer, passages(corpus_text))
    wanted = {"hits", "logprobs", "ranks", "entropy"}
    batched, batches = score_records(model, s.tokens, s.lengths, wanted, 3, "cpu", WINDOW, fused=fused)
    assert batches < len(s.lengths) * 2
    for i, n in enumerate(s.lengths):
        alone, _ = score_records(model, s.tokens[i:i + 1, :n], s.lengths[i:i + 1], wanted, 1, "cpu", WINDOW,
                                 fused=fused)
        for name in wanted:
            np.testing.assert_allclose(batched[name][i, :n - 1], alone[name][0], atol=2e-5, rtol=1e-5, err_msg=name)
        assert np.isnan(batched["logprobs"][i, n - 1:]).all() and not batched["hits"][i, n - 1:].any()
        assert not batched["ranks"][i, n - 1:].any()


def test_cut_keeps_the_window_and_counts_what_it_dropped(tokenizer, corpus_text):
    """`longer: cut` keeps each record's first window of scored tokens; the report counts the records cut and the
    tokens not scored, and bytes and words are those of the text kept."""
    docs = passages(corpus_text)
    whole, cut = records_samples(tokenizer, docs), records_samples(tokenizer, docs, longer="cut")
    assert (cut.lengths == np.minimum(whole.lengths, WINDOW + 1)).all()
    info = cut.info().records
    assert info.n_cut_tokens == int((whole.lengths - cut.lengths).sum()) > 0
    assert info.n_longer == int((whole.lengths > WINDOW + 1).sum()) and info.n_windows == len(docs)
    assert (cut.n_bytes <= whole.n_bytes).all() and (cut.n_bytes < whole.n_bytes).any()
    assert whole.info().records.n_windows > len(docs) and whole.info().records.n_cut_tokens == 0


def test_prefix_follows_the_tokenizer(tokenizer):
    """`auto` puts the EOS before each record for a tokenizer that adds nothing (GPT-NeoX, Pythia, Hubble's packed
    documents), the BOS for one that adds a BOS to every text (Llama); `none` scores from the second token."""
    from tokenizers.processors import TemplateProcessing

    from memaudit.inputs.records import resolve_prefix

    assert records_samples(tokenizer, ["one two three"]).prefix == ("eos", tokenizer.eos_token_id)
    llama_like = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer.__class__.from_str(
        tokenizer.backend_tokenizer.to_str()), bos_token="<bos>", eos_token=tokenizer.eos_token)
    llama_like.add_special_tokens({"bos_token": "<bos>"})
    bos = llama_like.bos_token_id
    llama_like.backend_tokenizer.post_processor = TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos)])
    from memaudit.inputs.config import DatasetConfig

    assert resolve_prefix(DatasetConfig(name="p", path="p.jsonl", samples="records"), llama_like) == ("bos", bos)
    s = records_samples(tokenizer, ["one two three"], prefix="none")
    assert s.prefix == ("none", None) and s.tokens[0, 0] != tokenizer.eos_token_id
    assert s.info().records.n_targets == int(s.lengths[0]) - 1


def test_fixed_length_data_keeps_its_keys(tokenizer):
    """Data cut into fixed-length samples has the fingerprint (products cache and journal keys) and report entry it had
    before whole records existed: digests recorded with the code of that time."""
    from memaudit.inputs.config import DatasetConfig
    from memaudit.inputs.data import load_samples

    class Tok:
        eos_token_id = 0

        def __len__(self):
            return 500

    rows = (np.arange(6 * 24).reshape(6, 24) * 7) % 500
    array = load_samples(DatasetConfig(name="array", path="x.jsonl", seq_len=16), Tok(), records=rows)
    listed = load_samples(DatasetConfig(name="tokens", path="x.jsonl", seq_len=16, group_by="dup"), Tok(),
                          records=[{"tokens": r.tolist(), "id": f"s{i}", "dup": i % 2} for i, r in enumerate(rows)])
    assert array.fingerprint == "d34dc706a95326e3e182e6a88cf80f62891495182adfc8c0da9f30e923fb038b"
    assert listed.fingerprint == "4e4c4b3a031d4dc1cc4efb03aa685fd1b31323ee81034b446354b33bf617f4f7"
    assert "records" not in array.info().model_dump() and array.lengths is None


def write_hubble_passages(path, tokenizer, corpus_text, levels=(0, 1, 4, 16)):
    """A file shaped like Hubble's published passages (`passages_gutenberg_popular_nodup.jsonl.gz`): gzipped JSONL,
    `text` of varied length, the duplication level inside the JSON string `meta`, level 0 never inserted."""
    docs = passages(corpus_text, n=4 * len(levels))
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i, text in enumerate(docs):
            meta = json.dumps({"duplicates": levels[i % len(levels)], "book": f"pg{i}"})
            f.write(json.dumps({"id": f"passage-{i}", "text": text, "meta": meta}) + "\n")
    return path


def test_hubble_recipe_as_published(tmp_path, make_series, tokenizer, corpus_text, write_config, run_cli):
    """docs/hubble.md's audit on a fixture shaped like the published data: a minimal pair, whole passages, every
    duplication level (the never-inserted 0 as control) with the twin's gain, in the units Hubble reports."""
    from memaudit.results.schema import AuditReport

    data = write_hubble_passages(tmp_path / "passages_gutenberg_popular_nodup.jsonl.gz", tokenizer, corpus_text)
    config = write_config({
        "series": [{"name": "perturbed", "local": str(make_series("perturbed", steps=(1, 2))), "reference": "standard"},
                   {"name": "standard", "local": str(make_series("standard", steps=(1, 2)))}],
        "datasets": [{"name": "gutenberg", "path": str(data), "samples": "records", "seq_len": WINDOW,
                      "group_by": "meta.duplicates"}],
        "probes": {"twin": {}, "perplexity": {}, "generation": {"prefixes": [4, 8], "new_tokens": 32}},
        "checks": [{"metric": "twin.gain", "dataset": "gutenberg[meta.duplicates=0]", "series": "perturbed",
                    "max": 5.0}],
    })
    code, out, err = run_cli("run", str(config), "-k", "memorization or perplexity or twin or generation", "--json",
                             str(tmp_path / "hubble.json"))
    assert code == 0, out + err
    report = AuditReport.model_validate_json((tmp_path / "hubble.json").read_text())
    twin = next(s for s in report.series if s.name == "perturbed").results["twin"]
    for level in (0, 1, 4, 16):
        row = twin[f"gutenberg[meta.duplicates={level}]"]
        assert row["level"] == level and row["n_samples"] == 4 and np.isfinite(row["gain"])
    assert twin["gutenberg[meta.duplicates=4]"]["auc_reference"] is not None  # against the level-0 control
    for level in (0, 16):  # the verbatim tasks, by level, against the twin
        row = twin[f"gutenberg[meta.duplicates={level}]"]
        assert 0 <= row["rougeL_f1"] <= 1 and row["generation_columns"] == ["rougeL_f1__greedy__k4", "approx__greedy__k4"]
        assert row["rougeL_f1_diff"] == pytest.approx(row["rougeL_f1"] - row["rougeL_f1_twin"])
    last = report.series[0].checkpoints[-1].results
    assert last["generation"]["gutenberg[meta.duplicates=16]"]["n_generated[k=8]"] == 4
    for level in (0, 16):
        units = last["perplexity"][f"gutenberg[meta.duplicates={level}]"]
        assert all(units[u] > 1 for u in ("token_perplexity", "word_perplexity", "byte_perplexity"))
    gutenberg = next(d for d in report.datasets if d.name == "gutenberg")
    assert gutenberg.records.n_longer > 0 and gutenberg.records.prefix == "eos" and gutenberg.n_samples == 16
    assert "16 records of" in out and "rolling windows" in out


@pytest.mark.parametrize("record, setting, message", [
    ({"text": "   "}, {}, "record 2 of .*'text' is empty \\(only whitespace\\)"),
    ({"tokens": []}, {}, "record 2 of .*'tokens' is empty"),
    ({"text": "a b", "meta": "{not json"}, {"group_by": "meta.duplicates"}, "record 2 of .*'meta' is a string but not"),
    ({"text": "a b", "meta": "[1, 2]"}, {"group_by": "meta.duplicates"}, "record 2 of .*'meta' is not an object"),
    ({"text": "a b", "meta": "{}"}, {"group_by": "meta.duplicates"}, "record 2 of .*no field 'meta.duplicates'"),
    ({"body": "a b"}, {}, "line 2 of .*either a 'text' or a 'tokens' field"),
    ({"tokens": [5]}, {"prefix": "none"}, "record 2 of .*one token and no prefix token"),
])
def test_bad_records_name_the_record(tmp_path, basic_config, run_cli, record, setting, message):
    """Bad records are a clear error naming the record (exit 2), before any checkpoint is loaded."""
    import re

    path = tmp_path / "p.jsonl"
    good = {"tokens": [5, 6, 7]} if "tokens" in record else {"text": "a good record"}
    path.write_text(json.dumps({**good, "meta": json.dumps({"duplicates": 1})}) + "\n" + json.dumps(record) + "\n",
                    encoding="utf-8")
    config = basic_config(datasets=[{"name": "p", "path": str(path), "samples": "records", "seq_len": 8, **setting}])
    code, out, err = run_cli("run", str(config))
    assert code == 2 and re.search(message, " ".join(err.split())), out + err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("dataset, message", [
    ({"path": "x.txt", "samples": "records"}, "'x.txt' is neither"),
    ({"path": "x.jsonl", "longer": "cut"}, "'longer' applies to 'samples: records'"),
    ({"path": "x.jsonl", "prefix": "bos"}, "'prefix' applies to 'samples: records'"),
    ({"path": "x.jsonl.gz", "samples": "records"}, "not a readable gzip file"),
])
def test_records_settings_are_validated(tmp_path, basic_config, run_cli, dataset, message):
    """Settings of whole records on data they do not apply to, and a broken gzip file, are refused (exit 2)."""
    (tmp_path / "x.txt").write_text("some text " * 20, encoding="utf-8")
    (tmp_path / "x.jsonl").write_text(json.dumps({"text": "some text"}) + "\n", encoding="utf-8")
    (tmp_path / "x.jsonl.gz").write_bytes(b"\x1f\x8b not really gzip")
    config = basic_config(datasets=[{"name": "p", **dataset, "path": str(tmp_path / dataset["path"])}])
    code, out, err = run_cli("run", str(config))
    assert code == 2 and message in " ".join(err.split()), out + err


def test_a_check_on_a_probe_that_does_not_read_records_is_refused(tmp_path, basic_config, run_cli):
    """A check on a probe that assumes fixed-length samples, on a data set of whole records, could never have a
    value: refused before loading, naming what would work."""
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"text": "a good record"}) + "\n", encoding="utf-8")
    config = basic_config(datasets=[{"name": "p", "path": str(path), "samples": "records"}],
                          checks=[{"metric": "unique_ids.M_shared", "dataset": "p", "max": 1}])
    code, out, err = run_cli("run", str(config))
    assert code == 2 and "does not read" in err and "memorization, perplexity" in " ".join(err.split()), out + err


def test_a_masked_lm_is_refused_for_whole_records(tokenizer, corpus_text):
    """Rolling windows are a causal model's: a masked LM given whole records is a configuration error (exit 2)."""
    from transformers import BertConfig, BertForMaskedLM

    from memaudit.engine.forward import score_records
    from memaudit.errors import ConfigError

    model = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=32)).eval()
    s = records_samples(tokenizer, passages(corpus_text, n=2))
    with pytest.raises(ConfigError, match="scores causal language models"):
        score_records(model, s.tokens, s.lengths, {"hits"}, 2, "cpu", WINDOW)


def test_membership_scores_of_a_padded_record_equal_the_record_alone():
    """Each record's membership scores (loss, zlib, Min-K%, Min-K%++) over its own tokens equal the fixed-length
    computation on that record alone, whatever the padding after it holds."""
    from memaudit.measures import membership_rows

    rng = np.random.default_rng(0)
    lengths = np.array([9, 4, 17, 2])  # tokens per record, the prefix included
    shape = (len(lengths), 16)
    products = {name: rng.normal(size=shape).astype(np.float32) - 3 for name in ("logprobs", "entropy")}
    products["logp2"] = products["entropy"] ** 2 + rng.uniform(0.1, 1, size=shape).astype(np.float32)
    zlib = np.array([30, 12, 50, 8])
    padded = {k: np.where(np.arange(16) < (lengths - 1)[:, None], v, np.nan) for k, v in products.items()}
    together = membership_rows(**padded, zlib_len=zlib, k_percent=20.0, lengths=lengths)
    for i, n in enumerate(lengths - 1):
        alone = membership_rows(**{k: v[i:i + 1, :n] for k, v in products.items()}, zlib_len=zlib[i:i + 1],
                                k_percent=20.0)
        for score, values in alone.items():
            assert together[score][i] == pytest.approx(float(values[0]), rel=1e-5), score


@pytest.mark.parametrize("kind", ["tokens", "text"])
def test_parquet_rows_are_records_too(tmp_path, tokenizer, corpus_text, kind):
    """A Parquet file of token lists of any length (or a text column), with a struct column to group by, reads as the
    same records as the JSONL file of the same content."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from memaudit.inputs.config import DatasetConfig
    from memaudit.inputs.data import load_samples

    docs = passages(corpus_text, n=6)
    content = [tokenizer(d, add_special_tokens=False)["input_ids"] for d in docs] if kind == "tokens" else docs
    meta = [{"duplicates": i % 3} for i in range(len(docs))]
    pq.write_table(pa.table({kind: content, "meta": meta}), tmp_path / "p.parquet")
    settings = {"samples": "records", "seq_len": WINDOW, "group_by": "meta.duplicates"}
    table = load_samples(DatasetConfig(name="p", path=tmp_path / "p.parquet", **settings), tokenizer)
    listed = load_samples(DatasetConfig(name="p", path=tmp_path / "p.jsonl", **settings), tokenizer,
                          records=[{kind: c, "meta": m} for c, m in zip(content, meta)])
    assert (table.lengths == listed.lengths).all() and np.array_equal(table.tokens, listed.tokens)
    assert [g.name for g in table.groups()] == ["p[meta.duplicates=0]", "p[meta.duplicates=1]", "p[meta.duplicates=2]"]
    assert table.fingerprint == listed.fingerprint  # the same content: the same products and journal keys


def test_one_huge_record_among_short_ones_is_refused_before_padding(tokenizer, monkeypatch):
    """Rows are padded to the longest record: one book among thousands of short passages would take far more
    memory than the tokens. That is refused, naming the record and what to do, before anything is allocated."""
    from memaudit.errors import ConfigError
    from memaudit.inputs import records

    monkeypatch.setattr(records, "PADDED_BYTES", 1 << 16)
    texts = ["a short one"] * 400 + ["word " * 3000]
    with pytest.raises(ConfigError, match=r"record 400 of .* tokens while the median record has .*'longer: cut'"):
        records_samples(tokenizer, texts)
    assert records_samples(tokenizer, texts, longer="cut").tokens.shape[1] == WINDOW + 1  # cut: no such padding


def test_extraction_on_records_starts_at_each_record_and_leaves_short_ones_out(tokenizer, corpus_text):
    """Greedy verdicts and p_z of whole records are those of each record's own first k + m tokens (after the prefix
    token); records shorter than k + m are counted apart, never as not extractable, in extraction_risk, memorization
    and memorized_strings alike."""
    from memaudit.engine.forward import score_records
    from memaudit.engine.registry import collect, probe_on, standard_probe_dir
    from memaudit.measures import extractable_samples, log_pz

    collected = {p.name: p for p in collect([standard_probe_dir()])}

    def probe(name, **params):
        p = collected[name]
        return type(p)(**{**p.__dict__, "params": {**p.params, **params}})

    model = tiny_model("gpt_neox", len(tokenizer), seed=2)
    s = records_samples(tokenizer, passages(corpus_text))
    k, m = 8, 8
    scheme = "T=1.0"
    products, _ = score_records(model, s.tokens, s.lengths, {"hits", "logprobs", f"sampling_logprobs:{scheme}"}, 4,
                                "cpu", WINDOW)
    hits, pz = products["hits"], products[f"sampling_logprobs:{scheme}"]
    hits[:, 1:1 + k + m] = True  # every record's first k + m tokens are greedy hits: extractable where long enough
    arguments = dict(hits=hits, logprobs=products["logprobs"], sampling_logprobs={scheme: pz}, lengths=s.lengths,
                     sample_ids=s.ids, sample_steps=None, dataset=s.info(), ledger=None, text_of=None,
                     checkpoint=type("C", (), {"objective": "causal", "step": 1})())
    short = s.lengths - 1 < k + m
    assert short.any() and not short.all()
    risk = probe_on(probe("extraction_risk", pairs=[[k, m]], schemes=[{"temperature": 1.0}], n=[1], p=[0.5]),
                    **arguments)
    assert risk[f"greedy_rate[k={k},m={m}]"] == 1.0 and risk[f"n_not_applicable[k={k},m={m}]"] == int(short.sum())
    expected = log_pz(pz[~short, 1:], k, m) / np.log(10)
    assert risk[f"log10_pz_max[{scheme}][k={k},m={m}]"] == pytest.approx(float(expected.max()))
    mem = probe_on(probe("memorization", k=k, m=m), **arguments)
    assert mem["extractable"] == 1.0 and mem["n_extractable"] == int((~short).sum())
    assert mem["n_extraction_not_applicable"] == int(short.sum())
    strings = probe_on(probe("memorized_strings", k=k, m=m, schemes=[{"temperature": 1.0}]), **arguments)
    assert strings["n_extractable"] == int((~short).sum())
    assert extractable_samples(hits[~short, 1:], k, m)[0].all()


def test_the_products_key_follows_the_window_and_the_lengths(tokenizer, corpus_text):
    """Whole records' products depend on where each row ends and on the window (rolling windows): both are in the
    key the products cache and the tag cache use, so another window or other lengths never reuse them."""
    docs = passages(corpus_text)
    base = records_samples(tokenizer, docs)
    assert records_samples(tokenizer, docs).sha256 == base.sha256
    from memaudit.inputs.config import DatasetConfig
    from memaudit.inputs.data import load_samples

    wider = load_samples(DatasetConfig(name="passages", path="p.jsonl", samples="records", seq_len=2 * WINDOW),
                         tokenizer, records=docs)
    assert np.array_equal(wider.tokens, base.tokens) and wider.sha256 != base.sha256
    shorter = records_samples(tokenizer, docs)
    shorter.lengths = shorter.lengths.copy()
    shorter.lengths[0] -= 1  # the same padded tokens, one record a token shorter
    shorter.__dict__.pop("sha256", None)
    assert shorter.sha256 != base.sha256


def test_pos_and_identifiers_count_each_record_s_own_tokens(tokenizer, corpus_text):
    """Part-of-speech tags and identifier masks of whole records are each record's own: a padded record's tags and
    mask equal the record's alone, the padding is no tag (-1) and no identifier, and the probes count no padding."""
    import spacy

    from memaudit.engine.registry import collect, probe_on, standard_probe_dir
    from memaudit.inputs.identifiers import identifier_mask
    from memaudit.inputs.tagging import load_pipeline, tag_samples

    nlp = load_pipeline("auto")[0]
    assert isinstance(nlp, spacy.language.Language)
    s = records_samples(tokenizer, [d + " Call 555-0199 or mail a.b@example.org." for d in passages(corpus_text, 4)])
    tags = tag_samples(s.tokens, tokenizer, nlp, lengths=s.lengths)
    ids = identifier_mask(s.tokens, tokenizer, tags, s.lengths)
    for i, n in enumerate(s.lengths):
        alone = s.tokens[i:i + 1, :n]
        np.testing.assert_array_equal(tags[i, :n - 1], tag_samples(alone, tokenizer, nlp)[0])
        np.testing.assert_array_equal(ids[i, :n - 1], identifier_mask(alone, tokenizer, tags[i:i + 1, :n - 1])[0])
        assert (tags[i, n - 1:] == -1).all() and not ids[i, n - 1:].any()
    assert ids.any()
    probes = {p.name: p for p in collect([standard_probe_dir()])}
    hits = np.ones(tags.shape, dtype=bool)  # every target a hit, and the padding too: it must not count
    valid = np.arange(tags.shape[1]) < (s.lengths - 1)[:, None]
    pos = probe_on(probes["pos"], hits=hits, pos_tags=tags, lengths=s.lengths)
    assert sum(pos["count"].values()) == int(valid.sum()) and set(pos["R"].values()) == {1.0}
    found = probe_on(probes["identifiers"], hits=hits & valid, id_mask=ids, lengths=s.lengths)
    assert found["M_with_ids"] == 1.0 and found["id_token_share"] == pytest.approx(ids.sum() / valid.sum())
