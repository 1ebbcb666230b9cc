"""`memaudit run | list | show | plot | schema | lab | demo`.

Only the standard library, pydantic, yaml and rich are imported at start; torch and transformers
load when a command needs a model, so `--help`, `show` and `schema` are fast.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import traceback
from pathlib import Path

from memaudit.version import __version__
from memaudit.engine.registry import figure_makers
from memaudit.errors import ExitCode, MemauditError
from memaudit.report.media import offered, write_all

DEFAULT_CONFIG = "checkpoints.yaml"


def _console(stderr: bool = False):
    from memaudit.report.render import make_console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 120  # logs and pipes: wide tables
    return make_console(stderr=stderr, width=width)


def cmd_run(args) -> int:
    """Audit every checkpoint of the yaml's series with the collected probes."""
    from memaudit.atomic import check_writable
    from memaudit.inputs.config import apply_overrides, check_outputs, load_config

    config, config_hash = load_config(args.config)
    apply_overrides(config, tolerance=args.tolerance, processes=args.processes, batch_size=args.batch_size,
                    dtype=args.dtype, device=args.device, device_map=args.device_map)  # bad values: exit 2 now
    if args.processes and args.processes > 1 and "LOCAL_RANK" not in os.environ:
        from memaudit.engine.distributed import launch

        return launch(args.processes, _without_processes(sys.argv[1:]))
    from memaudit.engine.plan import RunOptions, make_plan
    from memaudit.engine.run import run_audit
    from memaudit.report.progress import AuditProgress
    from memaudit.report.render import render_report
    from memaudit.results.schema import write_report

    plan = make_plan(config, args.keyword)
    media = _media_paths(args, "run")
    outputs = {**{f"--{name}": path for name, path in media.items()}, "--save-baseline": args.save_baseline,
               "--samples-out": args.samples_out}
    check_outputs(config, outputs, {"the configuration": args.config, "the --compare report": args.compare})
    for flag, path in outputs.items():
        if path:
            check_writable(Path(path) / "x" if flag == "--samples-out" else path)
    baseline = _open_report(args.compare) if args.compare else None
    opts = RunOptions(fail_fast=args.exitfirst, batch_size=args.batch_size,
                      dtype=args.dtype, device=args.device, use_cache=not args.no_cache, evict=args.evict,
                      allow_pickle=args.allow_pickle, baseline=baseline, tolerance=args.tolerance,
                      show_text=args.show_text, device_map=args.device_map,
                      command="memaudit " + " ".join(sys.argv[1:]),
                      config_path=str(args.config), samples_out=Path(args.samples_out) if args.samples_out else None)
    with AuditProgress(_console(stderr=True)) as progress:
        report = run_audit(plan, config_hash, opts, on_event=progress)
    if int(os.environ.get("RANK", "0")) != 0:  # other processes of a multi-process run: the main one reports
        return report.exit_code
    write_all(report, media, makers=functools.partial(figure_makers, plan.config.probe_paths))
    if args.save_baseline:
        write_report(report, args.save_baseline)
    render_report(report, _console(), quiet=args.quiet)
    return report.exit_code


def _without_processes(argv: list[str]) -> list[str]:
    """The command line less `--processes N` / `--processes=N` (the launched processes must not launch)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            out.append(arg)
    return out


def cmd_list(args) -> int:
    """Show collected probes (products, parameters) and the resolved checkpoints; load no model."""
    from rich.table import Table

    if args.products:
        return _list_products()
    from memaudit.engine.plan import make_plan
    from memaudit.inputs.config import load_config
    from memaudit.inputs.sources import resolve_series
    from memaudit.report.escape import visible

    config, _ = load_config(args.config)
    plan = make_plan(config, args.keyword)
    console = _console()
    probes = Table(title="probes", title_justify="left")
    for col in ("probe", "kind", "products", "parameters", "source"):
        probes.add_column(col)
    for p in plan.probes:
        probes.add_row(p.name, p.kind, ", ".join(p.products) or "–",
                       ", ".join(f"{k}={v!r}" for k, v in p.params.items()) or "–", Path(p.source).name)
    console.print(probes)
    for s in config.series:
        table = Table(title=f"series {visible(s.display_name)}", title_justify="left")
        for col in ("checkpoint", "step", "sha", "location"):
            table.add_column(col)
        for c in resolve_series(s):
            table.add_row(visible(c.name), "–" if c.step is None else str(c.step),
                          c.sha[:12] if c.unavailable is None else f"unavailable: {visible(c.unavailable)}",
                          visible(c.location))
        console.print(table)
    return ExitCode.OK


def _list_products() -> int:
    """Every argument a probe may ask for, from the one table in memaudit.engine.catalog (like pytest --fixtures)."""
    from rich.table import Table

    from memaudit.engine.catalog import PRODUCTS, SERIES_ARGS

    console = _console()
    for title, table in (("per-checkpoint probes (@probe)", PRODUCTS), ("series probes (@series_probe)", SERIES_ARGS)):
        out = Table(title=title, title_justify="left")
        for col in ("argument", "type", "shape", "made by", "meaning"):
            out.add_column(col)
        for p in table.values():
            out.add_row(p.name, p.type, p.shape or "–", p.made_by, p.meaning)
        console.print(out)
    return ExitCode.OK


def _open_report(path):
    from memaudit.results.schema import open_report

    return open_report(path)


def cmd_show(args) -> int:
    """Re-render a saved JSON report (no torch import)."""
    from memaudit.atomic import check_writable
    from memaudit.inputs.config import check_output_paths
    from memaudit.report.render import render_report

    media = _media_paths(args, "show")
    check_output_paths({f"--{name}": path for name, path in media.items()}, [("the report", args.report)])
    for path in filter(None, media.values()):
        check_writable(path)
    report = _open_report(args.report)
    write_all(report, media, makers=figure_makers)
    render_report(report, _console(), quiet=args.quiet)
    return report.exit_code


def cmd_plot(args) -> int:
    """Write PNG figures of a saved report (no torch import)."""
    from memaudit.plots import pyplot, write_figures

    pyplot()  # matplotlib is there, or say what to install before reading anything

    paths = write_figures(_open_report(args.report), Path(args.out), args.probe_path)
    for path in paths:
        print(path)
    if not paths:
        print("the report has no curve to draw", file=sys.stderr)
    return ExitCode.OK


def cmd_schema(args) -> int:
    """Print the report's JSON Schema (with --samples: the per-sample schema, as a Markdown table)."""
    if args.samples:
        from memaudit.engine.registry import collect, standard_probe_dir
        from memaudit.results.samples import table_markdown

        print(table_markdown({p.name: p.columns for p in collect([standard_probe_dir()]) if p.columns}))
        return ExitCode.OK
    from memaudit.results.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return ExitCode.OK


def cmd_lab(args) -> int:
    """Train the tiny model series a lab config describes."""
    from memaudit.lab.config import load_lab_config
    from memaudit.lab.train import run_lab

    lab = load_lab_config(args.config)
    run_lab(lab, out=Path(args.out) if args.out else None, overwrite=args.overwrite, console=_console(stderr=True))
    return ExitCode.OK


def cmd_demo(args) -> int:
    """Train the built-in demo series (if not there yet) and audit it."""
    import importlib.util

    from memaudit.inputs.tagging import installed_pipeline
    from memaudit.lab.demo import prepare_demo

    skipped = []  # what is not installed is left out of the demo, said before the training, not after it
    if installed_pipeline("auto") is None:
        args.keyword = f"({args.keyword}) and not pos" if args.keyword else "not pos"
        skipped.append("part of speech (no spaCy English pipeline: `python -m spacy download en_core_web_sm`)")
    if args.html and importlib.util.find_spec("matplotlib") is None:
        skipped.append("the HTML page's figures (no matplotlib: `pip install \"memaudit-lm[plot]\"`)")
    for what in skipped:
        _console(stderr=True).print(f"memaudit demo: skipping {what}", highlight=False, soft_wrap=True)

    config_path = prepare_demo(Path(args.out), overwrite=args.overwrite, console=_console(stderr=True))
    args.config = config_path
    return cmd_run(args)


def _add_media(p: argparse.ArgumentParser, command: str) -> None:
    """`--<medium> PATH` for every output medium the command offers (memaudit.report.media)."""
    for m in offered(command):
        p.add_argument(m.option, metavar="PATH", dest=m.dest, help=m.help)


def _media_paths(args, command: str) -> dict[str, str | None]:
    """Medium name -> the path the command line gave (None: not asked for)."""
    return {m.name: getattr(args, m.dest) for m in offered(command)}


def _add_run_options(p: argparse.ArgumentParser) -> None:
    _add_media(p, "run")
    p.add_argument("-k", dest="keyword", metavar="EXPR", help="only probes whose name matches (and/or/not)")
    p.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failing check")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary line")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="model dtype")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="samples per forward batch (default: chosen from the memory, halved on out-of-memory)")
    p.add_argument("--device-map", choices=["auto"], help="spread each model over the devices (big models)")
    p.add_argument("--processes", type=int, metavar="N",
                   help="share the checkpoints between N local processes (torchrun; on GPUs one per GPU)")
    p.add_argument("--save-baseline", metavar="PATH", help="save this run's report as a baseline for --compare")
    p.add_argument("--samples-out", metavar="DIR", help="write one Parquet file per checkpoint with a row per sample "
                   "(M, loss, greedy verdict, match length, membership scores; needs pyarrow)")
    p.add_argument("--compare", metavar="PATH", help="fail when metrics drift from this saved report "
                   "(the yaml's 'regressions', or every shown metric at the last checkpoint)")
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="allowed drift either way with --compare when the yaml has no 'regressions' (0.02)")
    p.add_argument("--no-cache", action="store_true",
                   help="neither read nor write the products cache and the run journal (no resume)")
    p.add_argument("--evict", action="store_true",
                   help="delete each Hub revision from the HF cache once its products are saved")
    p.add_argument("--show-text", action="store_true",
                   help="put the (redacted) text of memorized samples in the report; off by default")
    p.add_argument("--allow-pickle", action="store_true",
                   help="load pickle-format weights (pytorch_model.bin) when there are no safetensors; "
                        "unpickling can run code: only for checkpoints you trust")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="memaudit", description="pytest-style memorization audits for series of LM checkpoints. "
        "Exit codes: 0 passed, 1 a check failed, 2 usage/config error or interrupted, 3 internal error, "
        "4 checkpoint source unavailable, 5 nothing collected.")
    parser.add_argument("--version", action="version", version=f"memaudit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help=cmd_run.__doc__)
    p.add_argument("config", nargs="?", default=DEFAULT_CONFIG, type=Path, help="checkpoints.yaml")
    _add_run_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("list", help=cmd_list.__doc__)
    p.add_argument("config", nargs="?", default=DEFAULT_CONFIG, type=Path)
    p.add_argument("-k", dest="keyword", metavar="EXPR", help="only probes whose name matches (and/or/not)")
    p.add_argument("--products", action="store_true",
                   help="list every argument a probe may ask for (products, data, context) and exit")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help=cmd_show.__doc__)
    p.add_argument("report", type=Path)
    p.add_argument("-q", "--quiet", action="store_true")
    _add_media(p, "show")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("plot", help=cmd_plot.__doc__)
    p.add_argument("report", type=Path)
    p.add_argument("--out", default="memaudit-figures", help="folder for the PNG files (default: ./memaudit-figures)")
    p.add_argument("--probe-path", action="append", default=[], type=Path, metavar="PATH",
                   help="also draw the figures declared by the probes in this file or folder (repeatable)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("schema", help=cmd_schema.__doc__)
    p.add_argument("--samples", action="store_true", help="the columns of the per-sample rows (--samples-out, "
                   "samples_frame(), --samples-csv) instead of the report's JSON Schema")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("lab", help=cmd_lab.__doc__)
    p.add_argument("config", type=Path, help="lab yaml, or the name of a shipped recipe (demo, forgetting-sizes, ...)")
    p.add_argument("--out", help="output folder (default: the yaml's 'out')")
    p.add_argument("--overwrite", action="store_true", help="replace a different series in the output folder")
    p.set_defaults(func=cmd_lab)

    p = sub.add_parser("demo", help=cmd_demo.__doc__)
    p.add_argument("--out", default="memaudit-demo", help="where the demo series goes (default: ./memaudit-demo)")
    p.add_argument("--overwrite", action="store_true", help="retrain even if the demo series exists")
    _add_run_options(p)
    p.set_defaults(func=cmd_demo)
    for command in sub.choices.values():  # `memaudit run x.yaml --debug` as well as `memaudit --debug run x.yaml`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `memaudit` command; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or usage error (2)
        return int(e.code or 0)
    try:
        return int(args.func(args))
    except MemauditError as e:
        if args.debug:
            traceback.print_exc()
        from rich.text import Text

        from memaudit.report.escape import visible

        _console(stderr=True).print(Text.assemble(("error: ", "bold red"), visible(str(e))), soft_wrap=True)
        return int(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return int(ExitCode.USAGE_ERROR)
    except BrokenPipeError:  # `memaudit schema | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return int(ExitCode.OK)
    except Exception:
        traceback.print_exc()
        print("memaudit: internal error (above). Please report it with the command and the yaml.", file=sys.stderr)
        return int(ExitCode.INTERNAL_ERROR)


if __name__ == "__main__":
    sys.exit(main())
