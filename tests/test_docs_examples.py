"""Every yaml, check and `memaudit` command the README and docs/ show is valid as written: each yaml block is
parsed and planned as `memaudit run` does before loading anything (probes collected and selected, parameters,
checks and designs validated), each inline check too, and each command line parses with memaudit's own CLI."""

import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
STAND_IN_SERIES = {"name": "stand-in", "local": "runs/stand-in"}
STAND_IN_DATA = {"name": "train", "path": "data/train.txt"}


def _blocks(kind: str) -> list:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"```(\w*)\n(.*?)```", text, re.S):
            if match[1] == kind:
                line = text[:match.start()].count("\n") + 1
                found.append(pytest.param(match[2], id=f"{page.relative_to(ROOT)}:{line}"))
    return found


def _inline_checks() -> list:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"`(\{metric:[^`]*\})`", text):
            line = text[:match.start()].count("\n") + 1
            found.append(pytest.param(" ".join(match[1].split()), id=f"{page.relative_to(ROOT)}:{line}"))
    return found


@pytest.fixture(autouse=True)
def _in_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _plan(raw: dict):
    """What `memaudit run` does with a yaml before anything loads; a fragment gets a stand-in series or data set
    where it shows none (and the series its probes name as references), and its probe folders (empty)."""
    from memaudit.engine.plan import make_plan
    from memaudit.inputs.config import parse_config

    raw = dict(raw)
    named = [p["reference"] for p in (raw.get("probes") or {}).values() if isinstance(p, dict) and "reference" in p]
    raw.setdefault("series", [STAND_IN_SERIES, *({"name": n, "local": f"runs/{n}"} for n in named)])
    raw.setdefault("datasets", [STAND_IN_DATA])
    for folder in raw.get("probe_paths", []):
        Path(folder).mkdir(parents=True, exist_ok=True)
    return make_plan(parse_config(raw, source="the docs"))


def _example_files() -> list:
    return [pytest.param(f.read_text(encoding="utf-8"), id=str(f.relative_to(ROOT)))
            for f in sorted((ROOT / "examples").glob("*.yaml"))]


@pytest.mark.parametrize("block", _blocks("yaml") + _example_files())
def test_every_yaml_block_of_the_docs_is_a_valid_audit(block):
    raw = yaml.safe_load(block)
    if set(raw) == {"revisions"}:  # a list of alternatives, one per line
        for line in block.splitlines():
            _plan({"series": [{**STAND_IN_SERIES, "hub": "org/model", "local": None,
                               **yaml.safe_load(line.split("#")[0])}]})
        return
    _plan(raw)


@pytest.mark.parametrize("check", _inline_checks())
def test_every_check_the_docs_show_inline_is_valid(check):
    rule = yaml.safe_load(check)
    datasets = [{**STAND_IN_DATA, "name": rule["dataset"]}]
    probes = {rule["metric"].split(".")[0]: {}}  # a check on an opt-in probe comes with the probe named in the yaml
    if {"max_increase", "max_decrease"} & set(rule):
        _plan({"datasets": datasets, "regressions": [rule], "probes": probes})
    else:
        _plan({"datasets": datasets, "checks": [rule], "probes": probes})


def _commands() -> list:
    found = []
    for block in _blocks("bash") + _example_files():
        for line in block.values[0].replace("\\\n", " ").splitlines():
            command = line.lstrip("# ").split(" #")[0].strip()
            for part in command.split("&&"):
                if part.strip().startswith("memaudit "):
                    found.append(pytest.param(part.strip(), id=f"{block.id}: {part.strip()[:50]}"))
    return found


@pytest.mark.parametrize("command", _commands())
def test_every_memaudit_command_the_docs_show_parses(command):
    from memaudit.integrations.cli import build_parser

    build_parser().parse_args(shlex.split(command)[1:])


def test_the_docs_show_examples_to_test():
    assert len(_blocks("yaml")) >= 8 and len(_inline_checks()) >= 2 and len(_commands()) >= 5
