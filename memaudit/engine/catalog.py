"""Everything a probe can ask for by argument name: one table, read by the registry (argument names,
did-you-mean), the scorer (which per-token products to reduce, their dtypes), the text pass, the
products cache and `memaudit list --products`. Adding a product means a row here and the code that
computes it, nothing else. No numpy or torch here: dtypes are names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MadeBy = Literal["forward", "generate", "text", "data", "run"]


@dataclass(frozen=True)
class Product:
    """One argument a probe can ask for."""

    name: str
    meaning: str
    type: str  # numpy dtype name of an array, or the Python type
    shape: str = ""  # array shape, in words
    made_by: MadeBy = "forward"  # forward: the teacher-forced pass (cached); generate: the model continues the samples
    # (after the forward pass, with the same model; cached); text: a pass over the sample
    # text (spaCy, zlib), once per series; data: read with the data set; run: the run's own context


TARGETS = "(samples, seq_len - 1)"
PRODUCTS: dict[str, Product] = {p.name: p for p in [
    Product("hits", "argmax of the next-token distribution equals the target token", "bool", TARGETS),
    Product("logprobs", "log-probability of the target token", "float32", TARGETS),
    Product("ranks", "rank of the target token (1 = the argmax)", "int32", TARGETS),
    Product("entropy", "entropy (nats) of the next-token distribution", "float32", TARGETS),
    Product("logp2", "second moment E_p[(log p)^2] of the next-token distribution (with entropy: its variance)",
            "float32", TARGETS),
    Product("sampling_logprobs", "per sampling scheme the probe names in its `schemes` parameter (label -> array): "
            "log-probability of the target token under that scheme, -inf where it excludes the token "
            "(memaudit.engine.sampling)", "float32", TARGETS + " per scheme"),
    Product("generations", "the selected samples' prefixes continued by the model (greedy and sampled), as the "
            "probe's parameters `prefixes`, `new_tokens`, `until_eos`, `greedy`, `schemes`, `n`, `seed` and `select` "
            "ask (memaudit.engine.generations.Generations); None for a masked LM", "Generations",
            "(samples, draws, new tokens) per scheme and prefix", "generate"),
    Product("pos_tags", "universal POS tag id of each target token (see memaudit.inputs.tagging.TAGS)", "int8", TARGETS,
            "text"),
    Product("id_mask", "target token is identifier-like (see memaudit.inputs.identifiers)", "bool", TARGETS, "text"),
    Product("zlib_len", "bytes of the zlib-compressed sample text", "int64", "(samples,)", "text"),
    Product("text_of", "the (redacted) text of sample i, only with --show-text", "callable(i) -> str | None",
            made_by="text"),
    Product("tokens", "the sample tokens", "int64", "(samples, seq_len)", "data"),
    Product("sample_ids", "stable id of each sample", "list[str]", made_by="data"),
    Product("sample_steps", "training step at which each sample was seen, when the data says (else None)", "int64",
            "(samples,)", "data"),
    Product("target_mask", "the targets to score (canary candidates: from the secret on), else None", "bool",
            TARGETS, "data"),
    Product("lengths", "with `samples: records`: tokens of each sample, its prefix included (its row of `tokens` and of "
            "every product is padding after them: a probe that reads `lengths` honours it; a probe that does not is "
            "not given such data sets); None for fixed-length samples", "int64", "(samples,)", "data"),
    Product("n_bytes", "with `samples: records`: UTF-8 bytes of each record's text (lm-eval's count); else None",
            "int64", "(samples,)", "data"),
    Product("n_words", "with `samples: records`: words of each record's text (lm-eval's count); else None", "int64",
            "(samples,)", "data"),
    Product("dataset", "the data set being probed", "DatasetInfo", made_by="data"),
    Product("checkpoint", "name, step, sha and objective of the checkpoint", "Checkpoint", made_by="run"),
    Product("ledger", "the training ledger of the series, when there is one", "Ledger | None", made_by="run"),
    Product("data", "every data set's arguments by name, for probes made with per_dataset=False",
            "dict[str, SimpleNamespace]", made_by="run"),
    Product("rows", "for a probe made with @probe(rows=fn): fn's per-sample columns over every sample, in order "
            "(computed shard by shard)", "dict[str, ndarray]", "(samples,) each", made_by="run"),
]}
FORWARD = tuple(name for name, p in PRODUCTS.items() if p.made_by == "forward")
ALWAYS = ("hits", "logprobs")  # every pass makes these (the memorization core and the NaN check)
TEXT = tuple(name for name, p in PRODUCTS.items() if p.made_by == "text")
PER_SAMPLE = (*FORWARD, "generations", "pos_tags", "id_mask", "zlib_len", "tokens", "sample_ids", "sample_steps",
              "target_mask", "lengths", "n_bytes", "n_words")
"""Products with one entry per sample (first axis): cut into shards for a probe's `rows` function."""
ROW_ARGS = (*PER_SAMPLE, "dataset", "checkpoint", "ledger")
"""What a `rows` function may ask for: a shard's per-sample products and the context."""


def product_type(name: str) -> str:
    """The dtype of a forward product, also of one made per scheme (`sampling_logprobs:<scheme>`)."""
    return PRODUCTS[name.split(":", 1)[0]].type

SERIES_ARGS: dict[str, Product] = {p.name: p for p in [
    Product("checkpoints", "every audited checkpoint's results, in step order", "list[CheckpointResult]",
            made_by="run"),
    Product("datasets", "the data sets", "list[DatasetInfo]", made_by="run"),
    Product("series", "the series", "SeriesResult", made_by="run"),
    Product("ledger", "the training ledger of the series, when there is one", "Ledger | None", made_by="run"),
    Product("all_series", "every series of the run (per-checkpoint results), to compare against",
            "list[SeriesResult]", made_by="run"),
    Product("panel", "the per-sample values of the probes it `uses` across the series' checkpoints "
            "(memaudit.engine.panel.Panel: values(probe, column, data set) -> (checkpoints, samples)); None when "
            "this process holds none", "Panel | None", "(checkpoints, samples)", made_by="run"),
    Product("panels", "every series' panel by series name (a series compared with its twin reads both)",
            "dict[str, Panel]", made_by="run"),
    Product("ledgers", "every series' training ledger by series name (None where it has none)",
            "dict[str, Ledger | None]", made_by="run"),
    Product("series_configs", "every series of the yaml as configured (its `reference` twin, `reference_at`)",
            "dict[str, SeriesConfig]", made_by="run"),
]}
