"""The generation probe: memaudit's decoding loop against transformers' `generate` (greedy token for token, sampling
in distribution), greedy continuations against the teacher-forced k-extractable verdict sample by sample, the scores
against their reference implementations and Hubble's `process_results_gen`, the selection, the caches and bad
input."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import yaml
from conftest import SMALL_LAB, tiny_model

VOCAB = 97


def left_padded(prompts, pad=0):
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):], mask[i, width - len(p):] = torch.tensor(p), 1
    return ids, mask


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt2"])
def test_greedy_equals_transformers_generate(arch):
    """Prompts of different lengths in one left-padded batch, rows stopping at end-of-text or their budget: the same
    tokens as `generate(do_sample=False)` on CPU in float32."""
    from memaudit.engine.generate import continue_prompts

    model = tiny_model(arch, VOCAB, seed=3)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(1, VOCAB, size=n) for n in (5, 9, 3, 9, 7, 1)]
    ids, mask = left_padded(prompts)
    theirs = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=14, pad_token_id=0,
                            eos_token_id=None).numpy()[:, ids.shape[1]:]
    mine = continue_prompts(model, prompts, np.full(6, 14), None, 0, batch_size=4)
    np.testing.assert_array_equal(mine, theirs)
    eos = int(theirs[0, 4])  # a token the first row makes: it stops at its first, as generate stops
    first = list(theirs[0]).index(eos)
    stopped = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=14, pad_token_id=0,
                             eos_token_id=eos).numpy()[:, ids.shape[1]:]
    after = np.cumsum(np.cumsum(stopped == eos, axis=1), axis=1) > 1  # generate pads a row after its end-of-text
    mine = continue_prompts(model, prompts, np.full(6, 14), eos, 0, batch_size=6)
    assert mine[0, first] == eos and (mine[0, first + 1:] == -1).all()
    np.testing.assert_array_equal(mine, np.where(after, -1, stopped)[:, :mine.shape[1]])
    budgets = np.array([1, 14, 3, 0, 7, 2])  # each row stops at its own budget
    mine = continue_prompts(model, prompts, budgets, None, 0, batch_size=6)
    for row, budget in zip(mine, budgets):
        np.testing.assert_array_equal(row[:budget], theirs[list(budgets).index(budget)][:budget])
        assert (row[budget:] == -1).all()


@pytest.mark.parametrize("scheme", [{"temperature": 1.0}, {"temperature": 0.7, "top_k": 5},
                                    {"temperature": 1.3, "top_p": 0.8}])
def test_sampling_draws_from_the_scheme_and_agrees_with_generate(scheme):
    """First tokens sampled from one prompt under 4000 keys: a chi-square goodness-of-fit against the warped
    distribution (transformers' warpers), and a two-sample test against `generate(do_sample=True)`'s own draws;
    a draw is the same whatever batch it runs in."""
    import torch
    from scipy.stats import chi2_contingency, chisquare

    from memaudit.engine.generate import continue_prompts
    from memaudit.engine.sampling import SamplingScheme, warpers

    s = SamplingScheme(**scheme)
    model = tiny_model("gpt_neox", 11, seed=1)  # a small vocabulary: every token gets expected counts
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(8)  # a peaked next-token distribution, so that top-k and top-p bite
    prompt = np.array([3, 1, 4, 1, 5])
    n = 4000
    keys = np.arange(n, dtype=np.int64) * 2654435761 % 2**32
    mine = continue_prompts(model, [prompt] * n, np.full(n, 1), None, 0, batch_size=500, scheme=s, keys=keys)[:, 0]
    again = continue_prompts(model, [prompt] * 64, np.full(64, 1), None, 0, batch_size=7, scheme=s, keys=keys[:64])
    np.testing.assert_array_equal(again[:, 0], mine[:64])
    with torch.no_grad():
        logits = model(torch.tensor(prompt)[None]).logits[0, -1:].float()
        p = torch.softmax(warpers(s)(None, logits - logits.max()), -1)[0].numpy().astype(np.float64)
    counts = np.bincount(mine, minlength=11)
    assert counts[p == 0].sum() == 0  # a token the scheme excludes is never drawn
    keep = p * n >= 5
    expected = p[keep] / p[keep].sum() * counts[keep].sum()
    assert chisquare(counts[keep], expected).pvalue > 1e-3
    torch.manual_seed(0)
    extra = {"top_k": s.top_k or 0, "top_p": s.top_p or 1.0}
    theirs = model.generate(torch.tensor(prompt)[None].repeat(n, 1), do_sample=True, max_new_tokens=1,
                            temperature=s.temperature, pad_token_id=0, eos_token_id=None, **extra)[:, -1].numpy()
    table = np.stack([np.bincount(mine, minlength=11), np.bincount(theirs, minlength=11)])
    table = table[:, table.sum(axis=0) > 0]
    assert chi2_contingency(table).pvalue > 1e-3


def test_edit_distance_and_common_prefix_against_the_definition():
    from probes.generation import common_prefix, edit_distance

    def levenshtein(a, b):
        d = list(range(len(b) + 1))
        for i, x in enumerate(a, 1):
            prev, d[0] = d[0], i
            for j, y in enumerate(b, 1):
                prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
        return d[-1]

    rng = np.random.default_rng(0)
    a = np.full((300, 9), -1)
    b = np.full((300, 7), -1)
    rows_a, rows_b = [], []
    for i in range(300):
        x, y = rng.integers(0, 4, rng.integers(0, 10)), rng.integers(0, 4, rng.integers(0, 8))
        a[i, :len(x)], b[i, :len(y)] = x, y
        rows_a.append(list(x))
        rows_b.append(list(y))
    np.testing.assert_array_equal(edit_distance(a, b), [levenshtein(x, y) for x, y in zip(rows_a, rows_b)])
    np.testing.assert_array_equal(edit_distance(b, a), [levenshtein(y, x) for x, y in zip(rows_a, rows_b)])
    lcp = [next((j for j, (u, v) in enumerate(zip(x, y)) if u != v), min(len(x), len(y)))
           for x, y in zip(rows_a, rows_b)]
    np.testing.assert_array_equal(common_prefix(a, b), lcp)


# audits -------------------------------------------------------------------------------------------------------------


MEMORIZING_LAB = {**SMALL_LAB, "n_samples": 8, "n_valid": 4, "n_special": 0, "canaries": None, "epochs": 40,
                  "lr": 0.01, "save_every": 20, "runs": [{"name": "base", "layers": 2, "width": 64, "heads": 2}]}


@pytest.fixture(scope="module")
def memorizing_lab(tmp_path_factory):
    """A lab series that memorizes part of its training set by its last checkpoint."""
    from memaudit.lab.config import parse_lab_config
    from memaudit.lab.train import run_lab

    root = tmp_path_factory.mktemp("memorizing-lab")
    return run_lab(parse_lab_config({**MEMORIZING_LAB, "out": str(root / "lab")}, root)).parent


def outside_series(root, tokenizer, corpus_text):
    """A series trained outside the lab: a tiny GPT-2 fitted to a few passages with a plain torch loop, saved at two
    steps, and the passages as a JSONL data set."""
    import torch

    model = tiny_model("gpt2", len(tokenizer), seed=0, context=64)
    model.train()
    ids = tokenizer(corpus_text[:4000])["input_ids"]
    rows = torch.tensor([ids[i:i + 32] for i in range(0, 32 * 6, 32)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(1, 121):
        loss = model(input_ids=rows, labels=rows).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step in (40, 120):
            model.save_pretrained(root / "outside" / f"step-{step}")
            tokenizer.save_pretrained(root / "outside" / f"step-{step}")
    data = root / "outside.jsonl"
    data.write_text("".join(json.dumps({"tokens": r.tolist()}) + "\n" for r in rows))
    return root / "outside", data


def rows_of(folder):
    import pandas as pd

    return pd.concat([pd.read_parquet(p) for p in sorted(folder.rglob("*.parquet"))], ignore_index=True)


def test_greedy_exact_match_equals_the_k_extractable_verdict(memorizing_lab, tmp_path, tokenizer, corpus_text):
    """With a reference of m tokens, the first m greedy tokens equal the suffix exactly when the teacher-forced pass
    says the sample is k-extractable: sample by sample, on a lab series and on one trained outside the lab."""
    import memaudit

    lab = yaml.safe_load((memorizing_lab / "lab" / "checkpoints.yaml").read_text())
    lab["datasets"] = [d for d in lab["datasets"] if d["name"] in ("train", "valid")]
    outside, data = outside_series(tmp_path, tokenizer, corpus_text)
    elsewhere = {"series": [{"name": "outside", "local": str(outside)}],
                 "datasets": [{"name": "train", "path": str(data), "seq_len": 32}]}
    k, m = 8, 16
    for name, config, base in (("lab", lab, memorizing_lab / "lab"), ("outside", elsewhere, tmp_path)):
        config["probes"] = {"memorization": {"k": k, "m": m},
                            "generation": {"prefixes": [k], "new_tokens": m, "until_eos": False}}
        path = base / f"generation-{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        report = memaudit.audit(path, select="memorization or generation", samples_out=tmp_path / f"rows-{name}")
        assert report.exit_code in (0, 1), report.status
        rows = rows_of(tmp_path / f"rows-{name}")
        verdict, exact = rows["memorization_extractable"], rows[f"generation_exact__greedy__k{k}"]
        assert rows[f"generation_generated__k{k}"].all()
        np.testing.assert_array_equal(exact.to_numpy() == 1.0, verdict.to_numpy())
        lcp = rows[f"generation_lcp__greedy__k{k}"].to_numpy()
        np.testing.assert_array_equal(np.minimum(lcp, m), rows["memorization_match_len"].to_numpy())
        train = rows[rows.dataset == "train"]
        assert 0 < train["memorization_extractable"].sum() < len(train), name  # some memorized, some not


def test_hubble_verbatim_scores_equal_upstream(tmp_path, make_series, tokenizer, corpus_text, write_config):
    """Hubble's verbatim task on a fixture shaped like its passages: memaudit's ROUGE-L (plain and stemmed) and exact
    match equal what allegro-lab/hubble's `process_results_gen` computes on the same continuation and reference."""
    import sacrebleu
    from test_records import write_hubble_passages

    import memaudit

    data = write_hubble_passages(tmp_path / "passages_gutenberg_popular_nodup.jsonl.gz", tokenizer, corpus_text)
    config = write_config({
        "series": [{"name": "perturbed", "local": str(make_series("perturbed", steps=(1,)))}],
        "datasets": [{"name": "gutenberg", "path": str(data), "samples": "records", "seq_len": 64,
                      "group_by": "meta.duplicates"}],
        "probes": {"generation": {"prefixes": [4, 8]}},
        "run": {"redact": False},
    })
    report = memaudit.audit(config, select="generation", show_text=True, samples_out=tmp_path / "rows")
    assert report.exit_code == 0 and report.text_included
    rows = rows_of(tmp_path / "rows")
    rows = rows[rows.dataset == "gutenberg"]
    with gzip.open(data, "rt") as f:
        texts = [json.loads(line)["text"] for line in f]
    for k in (4, 8):
        for _, row in rows[rows[f"generation_generated__k{k}"]].iterrows():
            ids = tokenizer(texts[int(row.sample_index)])["input_ids"]
            doc = {"suffix_string": tokenizer.decode(ids[k:], skip_special_tokens=True).strip()}
            upstream = process_results_gen(doc, [row[f"generation_text__greedy__k{k}"]])
            for name in ("rougeL_f1", "rougeL_precision", "rougeL_recall", "rougeL_f1_stemmed",
                         "rougeL_precision_stemmed", "rougeL_recall_stemmed"):
                assert row[f"generation_{name}__greedy__k{k}"] == pytest.approx(upstream[name], abs=1e-12)
            assert row[f"generation_text_exact__greedy__k{k}"] == upstream["exact_match_tokens"]
            bleu = sacrebleu.sentence_bleu(row[f"generation_text__greedy__k{k}"].strip(), [doc["suffix_string"]])
            assert row[f"generation_bleu__greedy__k{k}"] == pytest.approx(bleu.score / 100, abs=1e-12)
    last = report.series[0].checkpoints[-1].results["generation"]
    assert last["gutenberg"]["n_generated[k=4]"] == 16 and "gutenberg[meta.duplicates=4]" in last
    from probes.generation import fig_generation

    fig = fig_generation(report)  # ROUGE-L against the duplication level, and over checkpoints
    assert [len(ax.lines) for ax in fig.axes] == [1, 1] and len(fig.axes[0].lines[0].get_xdata()) == 4


_ROUGE = {}


def process_results_gen(doc, results):
    """allegro-lab/hubble, hubble-lm-eval-tasks/gutenberg_popular_hubble/utils.py, ported as it is."""
    from rouge_score import rouge_scorer

    completion = results[0].strip()
    reference = doc["suffix_string"].strip()
    if not _ROUGE:
        _ROUGE["plain"] = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        _ROUGE["stemmed"] = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    score = _ROUGE["plain"].score(reference, completion)
    score_stemmed = _ROUGE["stemmed"].score(reference, completion)
    return {
        "rougeL_f1": score["rougeL"].fmeasure,
        "rougeL_precision": score["rougeL"].precision,
        "rougeL_recall": score["rougeL"].recall,
        "rougeL_f1_stemmed": score_stemmed["rougeL"].fmeasure,
        "rougeL_precision_stemmed": score_stemmed["rougeL"].precision,
        "rougeL_recall_stemmed": score_stemmed["rougeL"].recall,
        "exact_match_tokens": float(reference.lower() == completion.lower()),
    }


def test_approximate_memorization_is_a_share_of_draws_above_the_bleu_threshold(tmp_path, basic_config):
    """approx is BLEU > 0.75 per continuation, averaged over a scheme's draws; the text stays out of the rows and the
    report unless asked."""
    import memaudit

    config = basic_config(probes={"generation": {"prefixes": [6], "schemes": [{"temperature": 1.0}], "n": 2}})
    report = memaudit.audit(config, select="generation", samples_out=tmp_path / "rows")
    rows = rows_of(tmp_path / "rows")
    assert not report.text_included and len(rows) == 36
    assert not any(c.startswith("generation_text__") for c in rows.columns)
    greedy = rows["generation_bleu__greedy__k6"]
    assert greedy.between(0, 1).all()
    assert set(rows["generation_approx__greedy__k6"]) <= {0.0, 1.0}
    np.testing.assert_array_equal(rows["generation_approx__greedy__k6"] == 1.0, greedy > 0.75)
    assert set(rows["generation_approx__T1_0__k6"]) <= {0.0, 0.5, 1.0}  # a share over 2 draws



def test_selection_is_stable_and_the_report_says_it(tmp_path, basic_config):
    """A seeded random share picks the same samples whatever the shard size; a loss bound picks exactly the samples
    whose teacher-forced loss over the reference passes it; the report counts and describes them."""
    import memaudit

    def rows(name, select, **run):
        config = basic_config(probes={"generation": {"prefixes": [6], "new_tokens": 8, "select": select}},
                              run={"batch_size": 4, **run})
        report = memaudit.audit(config, select="memorization or generation", samples_out=tmp_path / name)
        return report, rows_of(tmp_path / name)

    report, whole = rows("whole", {"fraction": 0.5, "seed": 3})
    _, sharded = rows("sharded", {"fraction": 0.5, "seed": 3}, shard_size=5)
    np.testing.assert_array_equal(whole["generation_generated__k6"], sharded["generation_generated__k6"])
    chosen = whole["generation_generated__k6"]
    assert 0 < chosen.sum() < len(chosen)
    assert whole.loc[~chosen, "generation_rougeL_f1__greedy__k6"].isna().all()
    result = report.series[0].checkpoints[-1].results["generation"]["train"]
    assert result["n_generated[k=6]"] == chosen.sum() // 3 and result["selection"].startswith("a random 0.5")
    _, everything = rows("all", {})
    assert everything["generation_generated__k6"].all()
    _, low = rows("low-loss", {"max_loss": 6.0})  # random models: losses near log(vocab) ~ 6
    assert 0 < low["generation_generated__k6"].sum() < len(low)


def test_continuations_are_cached_and_keyed_by_the_request(tmp_path, basic_config):
    """A second run reads products and continuations back and loads no model; another seed or prefix generates
    again."""
    import memaudit

    probes = {"generation": {"prefixes": [6], "schemes": [{"temperature": 1.0}], "n": 2, "seed": 1}}
    first = memaudit.audit(basic_config(probes=probes), select="generation")
    again = memaudit.audit(basic_config(probes=probes), select="generation")
    assert all(c.n_forward_batches == 0 and c.from_cache for c in again.series[0].checkpoints)
    assert again.series[0].checkpoints[-1].results == first.series[0].checkpoints[-1].results
    probes["generation"]["seed"] = 2
    other = memaudit.audit(basic_config(probes=probes), select="generation")
    assert all(c.n_forward_batches > 0 for c in other.series[0].checkpoints)
    metric = "rougeL_f1[T=1.0][k=6]"
    assert other.series[0].checkpoints[-1].results["generation"]["train"][metric] != \
        first.series[0].checkpoints[-1].results["generation"]["train"][metric]


@pytest.mark.parametrize("params, message", [
    ({"greedy": False}, "nothing to generate"),
    ({"prefixes": [0]}, "prefixes"),
    ({"prefixes": []}, "prefixes"),
    ({"prefixes": [4, 4]}, "repeat a length"),
    ({"n": 0}, "n"),
    ({"new_tokens": 0}, "new_tokens"),
    ({"select": {"fraction": 0}}, "fraction"),
    ({"select": {"fraction": 1.5}}, "fraction"),
    ({"select": {"share": 0.5}}, "share"),
    ({"select": {"max_loss": -1}}, "max_loss"),
    ({"schemes": [{"temperature": 0}]}, "temperature"),
    ({"schemes": [{"top_k": 5}, {"top_k": 5}]}, "same scheme"),
    ({"prefixes": [6, 31]}, "prefix length 31 leaves no room to write in data set 'train' (seq_len 32"),
])
def test_bad_parameters_are_refused_before_anything_loads(basic_config, run_cli, params, message):
    code, _, err = run_cli("run", basic_config(probes={"generation": {"prefixes": [6], **params}}), "-k",
                           "generation")
    assert code == 2 and message in err and "Traceback" not in err, err


def test_missing_scorers_are_named_with_the_extra(basic_config, run_cli, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rouge_score" else real(name, *a))
    code, _, err = run_cli("run", basic_config(probes={"generation": {"prefixes": [6]}}), "-k", "generation")
    assert code == 2 and "memaudit-lm[generation]" in err and "rouge_score" in err


def test_a_model_in_memory_is_continued_too(tokenizer, corpus_text):
    """`audit_model` (no cache, no journal): the same continuations as the loop on the model itself."""
    import memaudit
    from memaudit.engine.generate import continue_prompts

    model = tiny_model("gpt_neox", len(tokenizer), seed=4)
    ids = tokenizer(corpus_text[:3000])["input_ids"]
    rows = np.array([ids[i:i + 24] for i in range(0, 24 * 5, 24)])
    result = memaudit.audit_model(model, tokenizer, {"train": {"data": rows, "seq_len": 24}}, probes=["generation"],
                                  params={"generation": {"prefixes": [6], "new_tokens": 8, "until_eos": False}},
                                  show_text=True)
    found = result.results["generation"]["train"]
    assert found["n_generated[k=6]"] == 5
    expected = continue_prompts(model, rows[:, :6], np.full(5, 8), None, 0, batch_size=5)
    exact = (expected == rows[:, 6:14]).all(axis=1).mean()
    assert found["exact[greedy][k=6]"] == exact
    lcp = np.cumprod(expected == rows[:, 6:14], axis=1).sum(axis=1).mean()
    assert found["lcp[greedy][k=6]"] == pytest.approx(lcp)


def test_two_probes_asking_for_continuations_are_refused(basic_config, run_cli, tmp_path):
    """A run generates once per checkpoint, for one probe's parameters: a second probe asking is a usage error."""
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "again.py").write_text('''
from memaudit import probe


def again_rows(generations, lengths):
    return {}


@probe(rows=again_rows, opt_in=True)
def again(rows, prefixes: list = [4]):
    """Continuations again."""
    return {}
''')
    config = basic_config(probe_paths=[str(tmp_path / "more")], probes={"generation": {"prefixes": [6]}, "again": {}})
    code, _, err = run_cli("run", config, "-k", "generation or again")
    assert code == 2 and "'generation', 'again' all ask for `generations`" in err and "Traceback" not in err
