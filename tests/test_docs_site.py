"""The documentation site (docs/, mkdocs.yml) builds with `mkdocs build --strict`: a broken link, a missing
page in the nav or a stale API reference fails the suite."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(root: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"),
                           "-d", str(out)], cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_docs_site_builds_strictly(tmp_path):
    result = build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    reference = (tmp_path / "site" / "reference" / "configuration" / "index.html").read_text()
    assert "seq_len" in reference and "Tokens per sample" in reference  # generated from the pydantic models
    assert (tmp_path / "site" / "where-things-go" / "index.html").exists()


def test_a_broken_link_fails_the_build(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    for package in ("memaudit", "probes"):
        (copy / package).symlink_to(ROOT / package)
    page = copy / "docs" / "ci.md"
    page.write_text(page.read_text() + "\nSee [the gate](no-such-page.md).\n")
    result = build(copy, tmp_path / "site")
    assert result.returncode != 0 and "no-such-page.md" in result.stderr
