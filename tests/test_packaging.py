"""The wheel carries the standard probes, the demo corpus and recipes: they work with no checkout."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_wheel_works_without_a_checkout(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    [wheel] = (tmp_path / "dist").glob("memaudit_lm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("memaudit/probes/memorization.py", "memaudit/lab/corpus/wikitext2_excerpt.txt",
                     "memaudit/lab/corpus/README.md", "memaudit/lab/recipes/demo.yaml", "memaudit/integrations/cli.py"):
        assert expected in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import memaudit; "
            "assert memaudit.__file__.startswith(sys.argv[1]), memaudit.__file__; "
            "from memaudit.engine.registry import collect, standard_probe_dir; "
            "print(sorted(p.name for p in collect([standard_probe_dir()]))); "
            "from memaudit.lab.demo import demo_lab_config; from memaudit.lab.train import read_corpus; "
            "print(len(demo_lab_config('x').runs), len(read_corpus('builtin')) > 50000)")
    out = subprocess.run([sys.executable, "-c", code, str(site)], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "'memorization', 'memorization_profile', 'memorization_series'" in out.stdout and "3 True" in out.stdout


def _alone() -> dict:
    """This environment less PYTHONPATH and PYTHONHOME: the venv's pip sees the venv only (a source tree on the
    path would read as the project installed already)."""
    import os

    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _venv_with_the_wheel(tmp_path) -> Path:
    """A fresh virtual environment with only the built wheel and its declared dependencies (torch from the
    CPU wheel this machine's install used, so no CUDA build is downloaded); its bin folder."""
    import os
    import shutil

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                    str(REPO)], check=True, capture_output=True)
    [wheel] = (tmp_path / "dist").glob("memaudit_lm-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    bin_ = tmp_path / "venv" / "bin"
    torch = os.environ.get("MEMAUDIT_TEST_TORCH") or "torch==2.13.0"
    for what in ([torch], [str(wheel)]):
        done = subprocess.run([str(bin_ / "python"), "-m", "pip", "install", "-q", *what], capture_output=True,
                              text=True, env=_alone())
        assert done.returncode == 0, done.stderr[-2000:]
    assert shutil.which("memaudit", path=str(bin_))
    return bin_


@pytest.mark.slow
@pytest.mark.wheel
def test_a_fresh_venv_with_only_the_wheel_runs_the_user_commands(tmp_path):
    """What a user gets from `pip install memaudit-lm`: --help, an audit, `plot` saying which extra it needs
    and working once it is there, and the demo leaving out what is not installed instead of failing."""
    bin_ = _venv_with_the_wheel(tmp_path)
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1",
           "MEMAUDIT_CACHE": str(tmp_path / "cache")}

    def memaudit(*args, timeout=600):
        return subprocess.run([str(bin_ / "memaudit"), *map(str, args)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=timeout)

    assert memaudit("--help").returncode == 0
    demo = memaudit("demo", "--out", tmp_path / "demo", "--json", tmp_path / "demo.json", "--html",
                    tmp_path / "demo.html")
    assert demo.returncode in (0, 1), demo.stderr[-3000:]
    assert "skipping part of speech" in demo.stderr and "skipping the HTML page's figures" in demo.stderr
    assert "Traceback" not in demo.stderr and (tmp_path / "demo.html").is_file()
    plot = memaudit("plot", tmp_path / "demo.json", "--out", tmp_path / "figs")
    assert plot.returncode == 2 and 'pip install "memaudit-lm[plot]"' in plot.stderr
    installed = subprocess.run([str(bin_ / "python"), "-m", "pip", "install", "-q", "matplotlib>=3.8"],
                               capture_output=True, text=True, env=_alone())
    assert installed.returncode == 0, installed.stderr[-2000:]
    plot = memaudit("plot", tmp_path / "demo.json", "--out", tmp_path / "figs")
    assert plot.returncode == 0 and list((tmp_path / "figs").glob("*.png")), plot.stderr[-2000:]
