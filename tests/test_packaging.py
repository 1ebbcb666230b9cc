"""The wheel carries the standard probes, the demo corpus and recipes: they work with no checkout."""

import subprocess
import sys
import zipfile
from pathlib import Path

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
