"""One checkpoint of a series: looked up in the run journal, its missing shards scored with the one forward pass,
its probes run on the products, its per-sample rows exported (`audit_checkpoint`, `from_journal`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from memaudit.engine.registry import call_checkpoint_probes, probe_arguments
from memaudit.memory import release_device, release_pages, trim_heap
from memaudit.results.events import Continued, RowsScored, ShardScored, TokensScored
from memaudit.results.schema import CheckpointResult

if TYPE_CHECKING:
    from memaudit.engine.series import SeriesContext


def checkpoint_errors() -> tuple[type[BaseException], ...]:
    """What makes one checkpoint fail without stopping the run: it cannot be loaded, or its logits are
    not finite. Configuration errors (MemauditError other than SourceUnavailable) still stop the run."""
    from safetensors import SafetensorError

    from memaudit.errors import SourceUnavailable

    return (SourceUnavailable, SafetensorError, OSError, RuntimeError)


@dataclass
class Found:
    """What is stored for a checkpoint already: journaled probe results, cached products, and the data
    sets still to score (none when every probe came from the journal)."""

    record: CheckpointResult | None = None
    reused: dict = field(default_factory=dict)
    products: dict = field(default_factory=dict)  # data set of one shard -> its per-token products
    shards: dict = field(default_factory=dict)  # data set -> shard index -> probe -> per-sample columns
    shard_products: dict = field(default_factory=dict)  # data set -> shard index -> products needed whole
    panel_rows: dict | None = None  # a journaled checkpoint's per-sample columns, for the panel
    missing: list[str] = field(default_factory=list)  # data sets with shards left to score (by this process)

    def done(self, ctx: SeriesContext) -> bool:
        return self.record is not None and set(self.reused) >= set(ctx.probe_keys)


def journaled_rows(ctx: SeriesContext, ckpt) -> dict | None:
    """A checkpoint's per-sample columns (probe -> data set -> column) from the shard journal, or None when
    a shard is missing there."""
    from memaudit.engine.shards import joined

    rows: dict = {}
    for name, s in ctx.samples.items():
        shards = []
        for part in ctx.parts(name):
            columns = ctx.run.shards.get(ctx.shard_key(ckpt, name, part), ctx.row_probes(name), part.stop - part.start)
            if columns is None:
                return None
            shards.append(columns)
        for probe, values in joined(shards).items():
            rows.setdefault(probe, {})[name] = values
    return rows


def check_inputs(ctx: SeriesContext) -> None:
    """Before a checkpoint's results are journaled: every memory-mapped data file is as it was opened, and
    its tokens still hash to what the results are keyed by (InputChanged otherwise: nothing is stored)."""
    for s in ctx.samples.values():
        s.check_unchanged(rehash=True)


def agreed(ctx: SeriesContext, done: bool) -> bool:
    """Whether a checkpoint is done on every process (with `sampled`, all of them audit it together)."""
    from memaudit.engine.distributed import gather

    return all(gather(ctx.run.processes, [done])) if ctx.sampled else done


def lookup(ctx: SeriesContext, ckpt) -> Found:
    """What the journal, the products cache and the shard journal hold for `ckpt` (a duplicate of an earlier
    checkpoint, same weights, reads that one's products), and which data sets this process must score."""
    record, reused = ctx.run.journal.get(ctx.journal_key(ckpt), ctx.probe_keys)
    if record is not None and ctx.run.opts.samples_out is not None:
        from memaudit.engine.samples_out import file_intact

        if not file_intact(ctx.run.opts.samples_out, record):  # no Parquet file, or not ours: compute it again
            record, reused = None, {}
    found = Found(record, reused)
    source = ctx.first_with.get(ckpt.weights_key, ckpt)
    if found.done(ctx) and ctx.panel is not None:
        found.panel_rows = journaled_rows(ctx, source)
        if found.panel_rows is None:  # the panel needs per-sample values the shard journal no longer has
            found = Found()
    if found.done(ctx):
        return found
    for name, s in ctx.samples.items():
        parts = ctx.parts(name)
        if len(parts) == 1:  # a small data set: its per-token products are cached whole
            hit = ctx.run.cache.get(ctx.products_key(source, name), ctx.needed,
                                    (s.tokens.shape[0], s.tokens.shape[1] - 1)) if 0 in ctx.mine(1) else None
            if hit is not None and ctx.generates(source):  # its continuations are cached too, or it is scored again
                made = _cached_generations(ctx, source, name)
                hit = None if made is None else {**hit, "generations": made}
            elif hit is not None and ctx.run.plan.generation is not None:  # a masked LM: nothing to continue
                hit = {**hit, "generations": None}
            if hit is not None:
                found.products[name] = hit
            elif 0 in ctx.mine(1):
                found.missing.append(name)
            continue
        probes, done = ctx.row_probes(name), found.shards.setdefault(name, {})
        journaled = () if ctx.whole else ctx.mine(len(parts))  # whole per-token products are not kept at this scale
        for i in journaled:
            columns = ctx.run.shards.get(ctx.shard_key(source, name, parts[i]), probes, parts[i].stop - parts[i].start)
            if columns is not None:
                done[i] = columns
        if any(i not in done for i in ctx.mine(len(parts))):
            found.missing.append(name)
    return found


def audit_checkpoint(ctx: SeriesContext, ckpt, found: Found, models, prefetch_next) -> CheckpointResult:
    """Load (or take the prefetched model), score what is missing, run the probes; a checkpoint that
    cannot be loaded or scored becomes a result with its error. With `sampled`, every process scores its
    shards and they are gathered before the probes run."""
    model, load_s, wait_s, scored, error = None, 0.0, 0.0, (0, 0.0, None), None
    try:
        try:
            model, load_s, wait_s = models.get(ckpt) if found.missing else (None, 0.0, 0.0)
        finally:
            prefetch_next()
        scored = score_missing(ctx, ckpt, found, model)
    except checkpoint_errors() as e:
        error = f"{type(e).__name__}: {e}"
    finally:
        del model
        release_device(ctx.run.device)
        trim_heap()
    if ctx.sampled:
        scored, error = _gather_shards(ctx, found, scored, error)
    if error is not None:
        return CheckpointResult(name=ckpt.name, step=ckpt.step, sha=ckpt.sha, location=ckpt.location, error=error)
    return _recorded(ctx, ckpt, *probe_checkpoint(ctx, ckpt, found, scored, load_s, wait_s))


def score_missing(ctx: SeriesContext, ckpt, found: Found, model) -> tuple[int, float, int | None]:
    """Score this process's missing shards of every data set: a data set of one shard whole (its per-token
    products cached), a larger one shard by shard, each reduced to its probes' per-sample columns, journaled
    and dropped. Returns (forward batches, forward seconds, parameters)."""
    from memaudit.engine.shards import shard_rows
    from memaudit.inputs.sources import count_parameters, n_parameters

    run = ctx.run
    if not found.missing:
        return 0, 0.0, count_parameters(ckpt)
    t, batches = time.perf_counter(), 0
    for name in found.missing:
        s, parts = ctx.samples[name], ctx.parts(name)
        if len(parts) == 1:
            s.check_unchanged()
            found.products[name], b = _score_tokens(ctx, model, s)
            made = _generate(ctx, ckpt, model, s, found.products[name])
            s.check_unchanged(rehash=True)  # what was scored is what the products are keyed by
            run.cache.put(ctx.products_key(ckpt, name), found.products[name])
            if made is not None:
                run.cache.put_generations(ctx.generations_key(ckpt, name), made.arrays())
            found.products[name]["generations"] = made
            batches += b
            continue
        done, todo = found.shards.setdefault(name, {}), list(ctx.mine(len(parts)))
        started, n_done = time.perf_counter(), 0
        for k, i in enumerate(todo):
            part = parts[i]
            if i not in done or ctx.whole:
                trim_heap()  # the heap's free holes (left by loading, or the last shard) leave our memory first
                s.check_unchanged()
                products, b = _score_tokens(ctx, model, s, part)  # (shard samples, seq_len - 1) each
                products["generations"] = _generate(ctx, ckpt, model, s, products, part)
                batches += b
                arguments = probe_arguments(s, products, ctx.text_products[name], ckpt, ctx.ledger, part)
                done[i] = shard_rows(run.plan.checkpoint_probes, arguments)
                s.check_unchanged()
                run.shards.put(ctx.shard_key(ckpt, name, part), done[i])
                if ctx.whole:
                    found.shard_products.setdefault(name, {})[i] = {p: products[p] for p in ctx.whole}
                n_done += part.stop - part.start
                release_pages(s.tokens)  # a memory-mapped file's pages read for this shard leave our memory
            elapsed = time.perf_counter() - started
            run.emit(ShardScored(name, done=k + 1, total=len(todo), samples=n_done,
                                 remaining=sum(parts[j].stop - parts[j].start for j in todo[k + 1:]), seconds=elapsed))
    return batches, time.perf_counter() - t, n_parameters(model)


def _score_tokens(ctx: SeriesContext, model, samples, part: slice = slice(None)) -> tuple[dict, int]:
    """The forward products of the samples in `part` (samples, seq_len - 1 each; rows of whole records: padded) and
    the batches run; the batch size the first call chooses (when the yaml fixes none) is kept for the rest of the
    run."""
    from memaudit.engine.forward import score_datasets

    run, cfg = ctx.run, ctx.run.run_cfg
    tokens = samples.tokens[part]
    records = {"": (samples.lengths[part], samples.config.seq_len)} if samples.lengths is not None else None
    scored, batches, run.batch_size = score_datasets(
        model, {"": tokens}, ctx.needed, run.device, batch_size=cfg.batch_size or run.batch_size,
        adaptive=cfg.batch_size is None, device_map=cfg.device_map, on_tokens=lambda n: run.emit(TokensScored(n)),
        records=records, mask_token_id=ctx.mask_token_id, mask_fraction=cfg.mask_fraction, mask_seed=cfg.mask_seed)
    if "head" not in run.said:
        from memaudit.engine.forward import fused_head, to_device

        run.said["head"] = fused_head(model, to_device(tokens[:1], model.get_input_embeddings().weight.device))[2]
    run.said.setdefault("attention", getattr(model.config, "_attn_implementation", None))
    return scored[""], batches


def _generate(ctx: SeriesContext, ckpt, model, samples, products: dict, part: slice = slice(None)):
    """The continuations a probe asks for of the samples in `part` (memaudit.engine.generations), with the model
    that scored them; None when no probe asks, or for a masked LM."""
    if not ctx.generates(ckpt):
        return None
    from memaudit.engine.generations import make_generations

    cfg, name = ctx.run.run_cfg, samples.config.name
    return make_generations(model, samples.tokens[part], _cut(samples.lengths, part), samples.record_start,
                            samples.ids[part], products["logprobs"], ctx.run.plan.generation, ctx.tokenizer,
                            cfg.batch_size or ctx.run.batch_size or 32, _window(samples), _shown(ctx),
                            lambda done, total: ctx.run.emit(Continued(name, done, total)))


def _cached_generations(ctx: SeriesContext, ckpt, name: str):
    """A one-shard data set's continuations from the products cache, or None."""
    from memaudit.engine.generations import Generations

    arrays = ctx.run.cache.get_generations(ctx.generations_key(ckpt, name))
    s = ctx.samples[name]
    return None if arrays is None else Generations.from_arrays(ctx.run.plan.generation, arrays, s.tokens, s.lengths,
                                                              s.record_start, ctx.tokenizer, _shown(ctx))


def _cut(values, part: slice):
    return None if values is None else values[part]


def _window(samples) -> int:
    """The context a data set is scored in: its seq_len (a record's window), or a fixed-length sample's width."""
    return samples.config.seq_len if samples.lengths is not None else samples.tokens.shape[1]


def _shown(ctx: SeriesContext):
    """With --show-text, what a continuation's text goes through before the rows keep it (redaction); else None."""
    cfg = ctx.run.run_cfg
    if not cfg.show_text:
        return None
    from memaudit.inputs.texts import redactor

    return redactor(cfg.redact, cfg.spacy_model)


def _gather_shards(ctx: SeriesContext, found: Found, scored: tuple, error: str | None):
    """Every process's shards (and products of one-shard data sets), errors and batch counts, on every process."""
    from memaudit.engine.distributed import gather

    mine = {"shards": found.shards, "shard_products": found.shard_products, "products": found.products,
            "scored": scored, "error": error}
    everyone = gather(ctx.run.processes, [mine])
    for theirs in everyone:
        for key in ("shards", "shard_products"):
            for name, by_index in theirs[key].items():
                getattr(found, key).setdefault(name, {}).update(by_index)
        found.products.update(theirs["products"])
    errors = [e["error"] for e in everyone if e["error"] is not None]
    batches = sum(e["scored"][0] for e in everyone)
    return (batches, max(e["scored"][1] for e in everyone), scored[2]), (errors[0] if errors else None)


def probe_checkpoint(ctx: SeriesContext, ckpt, found: Found, scored: tuple, load_s: float,
                     wait_s: float = 0.0):
    """Run the probes the journal lacks on the scored (or cached) data sets; returns the result and every
    rows function's per-sample columns (probe -> data set -> columns), for `--samples-out`."""
    from memaudit.engine.shards import joined, joined_products, shard_rows

    run = ctx.run
    batches, forward_s, n_params = scored
    arguments, rows = {}, {}
    for name, s in ctx.samples.items():
        parts = ctx.parts(name)
        if len(parts) == 1:
            products = found.products[name]
            columns = shard_rows(run.plan.checkpoint_probes,
                                 probe_arguments(s, products, ctx.text_products[name], ckpt, ctx.ledger))
            if run.plan.panel_probes:  # journaled like a shard, so the panel of a rerun reads it back
                run.shards.put(ctx.shard_key(ckpt, name, parts[0]), columns)
        else:
            columns = joined([found.shards[name].pop(i) for i in range(len(parts))])  # the shards' copies go
            products = joined_products([found.shard_products[name][i] for i in range(len(parts))]) if ctx.whole else {}
        arguments[name] = probe_arguments(s, products, ctx.text_products[name], ckpt, ctx.ledger)
        for probe, values in columns.items():
            rows.setdefault(probe, {})[name] = values
        for group, index, subset in ctx.groups.get(name, ()):  # group_by: the same probes on each group's samples
            arguments[group] = probe_arguments(subset, {k: v[index] if v is not None else None
                                                        for k, v in products.items()},
                                               _text_subset(ctx.text_products[name], index), ckpt, ctx.ledger)
            for probe, values in columns.items():
                rows.setdefault(probe, {})[group] = {col: v[index] for col, v in values.items()}
    computed = call_checkpoint_probes(run.plan.checkpoint_probes, arguments, ckpt, ctx.ledger, skip=found.reused,
                                      rows=rows)
    result = CheckpointResult(
        name=ckpt.name, step=ckpt.step, tokens_seen=ckpt.tokens, objective=ckpt.objective, sha=ckpt.sha,
        location=ckpt.location, n_params=n_params, load_s=round(load_s, 4), wait_s=round(wait_s, 4),
        forward_s=round(forward_s, 4),
        n_tokens=sum(s.n_targets for s in ctx.samples.values()),
        n_forward_batches=batches, from_cache=not batches,
        results={name: found.reused.get(name, computed.get(name)) for name in ctx.probe_keys},
        probes_from_journal=list(found.reused))
    return result, rows


def _text_subset(text_products: dict, index) -> dict:
    """A data set's text products (per-sample arrays, or `text_of(i)`) for the samples at `index`."""
    return {k: (lambda i, f=v: f(int(index[i]))) if callable(v) else v[index] if v is not None else None
            for k, v in text_products.items()}


def from_journal(ctx: SeriesContext, ckpt, found: Found) -> CheckpointResult:
    """A checkpoint every probe of which is in the journal: its record, with this run's location and probes."""
    return found.record.model_copy(update={
        "from_journal": True, "from_cache": True, "n_forward_batches": 0, "load_s": 0.0, "wait_s": 0.0,
        "forward_s": 0.0, "location": ckpt.location, "results": {name: found.reused[name] for name in ctx.probe_keys},
        "probes_from_journal": list(ctx.probe_keys)})


def audit_in_memory(ctx: SeriesContext, ckpt, model) -> CheckpointResult:
    """Score every data set of the series with `model` (loaded already, on its own device) and run the probes:
    the same path as a checkpoint loaded from disk."""
    ctx.run.device = model.get_input_embeddings().weight.device
    found = Found(missing=list(ctx.samples))
    return _recorded(ctx, ckpt, *probe_checkpoint(ctx, ckpt, found, score_missing(ctx, ckpt, found, model), 0.0))


def _recorded(ctx: SeriesContext, ckpt, result: CheckpointResult, rows: dict) -> CheckpointResult:
    """A freshly probed checkpoint's per-sample columns announced (RowsScored: the panel, --samples-out), and its
    result with what the recorders add to it."""
    return result.model_copy(update=ctx.run.emit(RowsScored(ctx.series.name, ckpt, rows, fresh=True, result=result)))
