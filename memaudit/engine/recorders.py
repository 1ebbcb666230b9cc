"""The run's own subscribers to its events (memaudit.results.events), beside the user's (the progress display,
`memaudit.audit(on_event=...)`): the per-sample panel that series probes read, the `--samples-out` Parquet
writer, and the run journal. Each is called with every event, on every process, and takes the ones it wants; a
recorder may return an update of the result it records (the writer: `samples_file`), which the loop applies before
the journal records it.
"""

from __future__ import annotations

from memaudit.results.events import CheckpointCollected, CheckpointFinished, RowsScored


def panel_recorder(run):
    """Adds each checkpoint's per-sample columns to its series' panel (main process; a series without one, none)."""

    def record(event) -> None:
        if isinstance(event, RowsScored) and event.rows is not None:
            panel = run.panels.get(event.series)
            if panel is not None and event.checkpoint.name not in panel.checkpoints:
                panel.add(event.checkpoint.name, event.checkpoint.step, event.rows)

    return record


def samples_recorder(run):
    """Writes each freshly scored checkpoint's per-sample columns to its Parquet file under `--samples-out` (main
    process), and returns `samples_file` for its result; a file that cannot be written leaves the result as it is
    and is listed in the report's `unwritten`."""

    def record(event) -> dict | None:
        if not (isinstance(event, RowsScored) and event.fresh and run.opts.samples_out is not None
                and run.processes.is_main_process):
            return None
        from memaudit.atomic import OutputError
        from memaudit.engine.samples_out import export

        ctx, ckpt = run.contexts[event.series], event.checkpoint
        try:
            written = export(run.opts.samples_out, event.series, event.result, ctx.samples, event.rows,
                             {name: ctx.parts(name) for name in ctx.samples},
                             {"config_hash": run.config_hash, "result_key": ctx.journal_key(ckpt)},
                             {p.name: p.columns for p in run.plan.checkpoint_probes})
        except OutputError as e:  # the results stand; the report says which file is missing
            run.unwritten.append(f"--samples-out of {event.series}/{ckpt.name}: {e}")
            return None
        return {"samples_file": written.samples_file}

    return record


def journal_recorder(run):
    """Journals each checkpoint audited in this run (not one read back from the journal, nor one that failed) on
    the main process, once its result is final: at CheckpointFinished with one process (a killed run keeps every
    checkpoint finished before), at CheckpointCollected with several (the main process has every process's
    results only then). The data read when the run began must be unchanged (`check_inputs`), or nothing is stored."""

    def record(event) -> None:
        moment = CheckpointFinished if run.processes.num_processes == 1 else CheckpointCollected
        if not (isinstance(event, moment) and run.processes.is_main_process and event.checkpoint is not None
                and not event.result.from_journal):
            return
        from memaudit.engine.checkpoint import check_inputs

        ctx = run.contexts[event.series]
        check_inputs(ctx)
        run.journal.record(ctx.journal_key(event.checkpoint), event.result, ctx.probe_keys)

    return record
