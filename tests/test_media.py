"""Output media (memaudit/report/media.py): one registry for the command line, the Python API and the pytest plugin;
a new medium is a module with its writer and one entry."""

import sys

import pytest


@pytest.fixture
def markdown_medium(tmp_path, monkeypatch):
    """A new medium, 'markdown': a module of its own and one registry entry (the two things a maintainer adds)."""
    from memaudit.report import media

    (tmp_path / "mdmedium.py").write_text('''
from pathlib import Path


def write_markdown(report, path):
    lines = [f"# memaudit: {report.status}"] + [f"- {c.name}: {'pass' if c.passed else 'FAIL'}" for c in report.checks]
    Path(path).write_text("\\n".join(lines) + "\\n")
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = media.Medium("markdown", ".md", "write a Markdown summary", "mdmedium:write_markdown")
    monkeypatch.setitem(media.MEDIA, "markdown", entry)
    yield entry
    sys.modules.pop("mdmedium", None)


def test_a_new_medium_reaches_the_command_line_and_the_api(markdown_medium, basic_config, run_cli, tmp_path):
    import memaudit

    config = basic_config(checks=[{"metric": "memorization.M", "dataset": "train", "max": 1.0}])
    code, _, err = run_cli("run", config, "-k", "memorization", "--markdown", tmp_path / "run.md", "--json",
                           tmp_path / "r.json")
    assert code == 0, err
    assert (tmp_path / "run.md").read_text().startswith("# memaudit: passed")
    code, _, err = run_cli("show", tmp_path / "r.json", "--markdown", tmp_path / "show.md")
    assert code == 0 and (tmp_path / "show.md").read_text() == (tmp_path / "run.md").read_text()
    memaudit.audit(config, select="memorization", outputs={"markdown": tmp_path / "api.md"})
    assert (tmp_path / "api.md").read_text() == (tmp_path / "run.md").read_text()


@pytest.mark.parametrize("outputs, words", [
    ({"htm": "x.html"}, "No output medium 'htm'. Did you mean 'html'"),
    ({"html": 3}, "outputs['html'] must be a file path"),
    ("x.html", "outputs must map output media to paths"),
])
def test_bad_outputs_of_the_api_are_refused_before_anything_runs(basic_config, outputs, words):
    import memaudit
    from memaudit.errors import ConfigError

    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace("[", r"\[")):
        memaudit.audit(basic_config(), select="memorization", outputs=outputs)


def test_an_output_onto_an_input_is_refused(basic_config, text_file):
    import memaudit
    from memaudit.errors import ConfigError

    with pytest.raises(ConfigError, match="would overwrite data set 'train'"):
        memaudit.audit(basic_config(), select="memorization", outputs={"html": text_file})
