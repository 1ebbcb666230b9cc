"""memaudit/engine/prefetch.py: the next checkpoint loads (downloads, on a Hub series) while this one is scored."""

import json
import threading
import time

import memaudit.engine.forward as forward
import memaudit.inputs.sources as sources


def test_the_next_load_overlaps_the_scoring_of_the_current_checkpoint(make_series, text_file, write_config, run_cli,
                                                                      tmp_path, monkeypatch):
    """A slow load (a download stand-in) of checkpoint i + 1 starts before the scoring of checkpoint i ends:
    checked by the order of events, not by timings."""
    events, lock = [], threading.Lock()
    real_load, real_score = sources.load_model, forward.score_datasets

    def slow_load(ckpt, *args, **kwargs):
        with lock:
            events.append(("load starts", ckpt.name))
        time.sleep(0.3)  # the network
        return real_load(ckpt, *args, **kwargs)

    def watched_score(model, *args, **kwargs):
        name = model.name_or_path.rsplit("/", 1)[-1]
        out = real_score(model, *args, **kwargs)
        time.sleep(0.3)  # a long scoring pass
        with lock:
            events.append(("scored", name))
        return out

    monkeypatch.setattr(sources, "load_model", slow_load)
    monkeypatch.setattr(forward, "score_datasets", watched_score)
    config = write_config({"series": [{"local": str(make_series(steps=(1, 2, 3)))}],
                           "datasets": [{"name": "d", "path": str(text_file), "max_samples": 4}]})
    code, _, err = run_cli("run", config, "--json", tmp_path / "r.json")
    assert code == 0, err
    assert len(json.loads((tmp_path / "r.json").read_text())["series"][0]["checkpoints"]) == 3
    for this, nxt in (("step-1", "step-2"), ("step-2", "step-3")):
        assert events.index(("load starts", nxt)) < events.index(("scored", this)), events
