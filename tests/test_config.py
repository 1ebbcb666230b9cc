"""memaudit/inputs/config.py: validation and path resolution."""

import pytest

from memaudit.errors import ConfigError
from memaudit.inputs.config import load_config, parse_config


def test_relative_paths_resolve_against_the_yaml_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text("series: [{local: runs/a}]\ndatasets: [{name: d, path: data/d.txt}]\nrun: {cache_dir: cache}\n")
    config, digest = load_config(path)
    assert config.series[0].local == tmp_path / "sub" / "runs" / "a"
    assert config.datasets[0].path == tmp_path / "sub" / "data" / "d.txt"
    assert config.run.cache_dir == tmp_path / "sub" / "cache"
    assert len(digest) == 16


def test_nested_unknown_key_names_its_place_and_valid_keys():
    with pytest.raises(ConfigError) as e:
        parse_config({"series": [{"local": "a"}], "datasets": [{"name": "d", "path": "p"}], "run": {"batchsize": 2}})
    assert "unknown key 'batchsize' in run" in str(e.value) and "Did you mean 'batch_size'?" in str(e.value)


def test_hub_series_defaults_to_main_and_duplicate_names_are_refused():
    config = parse_config({"series": [{"hub": "a/b"}], "datasets": [{"name": "d", "path": "p"}]})
    assert config.series[0].revisions == ["main"] and config.series[0].display_name == "a/b"
    with pytest.raises(ConfigError, match="repeated: d"):
        parse_config({"series": [{"hub": "a/b"}], "datasets": [{"name": "d", "path": "p"}, {"name": "d", "path": "q"}]})


def test_a_path_under_the_home_folder_is_expanded_before_it_is_joined(tmp_path, monkeypatch):
    from pathlib import Path

    from memaudit.inputs.config import load_config

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "c.yaml").write_text("series: [{local: ~/series}]\ndatasets: [{name: d, path: data/d.txt}]\n")
    config, _ = load_config(tmp_path / "c.yaml")
    assert config.series[0].local == tmp_path / "home" / "series"
    assert config.datasets[0].path == Path(tmp_path / "data" / "d.txt")
