"""Megatron indexed data (.bin/.idx) and memory-mapped .npy: read lazily, checked against megatron-core's writer."""

import json

import numpy as np
import pytest

from memaudit.errors import ConfigError
from memaudit.inputs.config import DatasetConfig
from memaudit.inputs.data import load_samples


def write_megatron(prefix, sequences, dtype=np.uint16, read_back=True):
    """Write with megatron-core's own IndexedDatasetBuilder (the reference writer), one document per sequence;
    return megatron-core's reader of it (which cannot open a data set of 0 sequences)."""
    import torch

    indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    builder = indexed.IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype)
    for seq in sequences:
        builder.add_item(torch.tensor(seq, dtype=torch.int64))
        builder.end_document()
    builder.finalize(f"{prefix}.idx")
    return indexed.IndexedDataset(str(prefix)) if read_back else None


class Vocab:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def config(path, **kw):
    return DatasetConfig(name="pile", path=path, seq_len=kw.pop("seq_len", 8), **kw)


def test_sequences_read_as_megatron_core_reads_them(tmp_path):
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 1000, 21).tolist() for _ in range(50)]
    reference = write_megatron(tmp_path / "pile", sequences)
    samples = load_samples(config(tmp_path / "pile.bin"), Vocab(1000))
    assert samples.tokens.shape == (50, 8) and not samples.tokens.flags.owndata  # a view of the memory map
    for i in (0, 17, 49):
        assert samples.tokens[i].tolist() == reference[i][:8].tolist() == sequences[i][:8]
    assert samples.ids[:2] == ["pile:0", "pile:1"] and samples.steps is None
    window = load_samples(config(tmp_path / "pile.idx", first_sample=30, max_samples=10, sequences_per_step=4),
                          Vocab(1000))
    assert window.tokens.tolist() == [s[:8] for s in sequences[30:40]]
    assert window.ids[0] == "pile:30" and window.steps.tolist() == [i // 4 for i in range(30, 40)]


def test_variable_lengths_and_the_hash_of_the_same_tokens(tmp_path):
    rng = np.random.default_rng(1)
    sequences = [rng.integers(0, 500, int(n)).tolist() for n in rng.integers(8, 30, 20)]
    write_megatron(tmp_path / "var", sequences, dtype=np.int32)
    samples = load_samples(config(tmp_path / "var.bin"), Vocab(500))
    assert samples.tokens.tolist() == [s[:8] for s in sequences]
    np.save(tmp_path / "same.npy", np.array([s[:8] for s in sequences], dtype=np.int64))
    assert load_samples(config(tmp_path / "same.npy"), Vocab(500)).sha256 == samples.sha256  # one key per content
    (tmp_path / "same.jsonl").write_text("".join(json.dumps({"tokens": s[:8]}) + "\n" for s in sequences))
    assert load_samples(config(tmp_path / "same.jsonl"), Vocab(500)).sha256 == samples.sha256


def test_npy_data_stays_a_memory_map(tmp_path):
    array = np.random.default_rng(2).integers(0, 100, (40, 12)).astype(np.int32)
    np.save(tmp_path / "t.npy", array)
    samples = load_samples(config(tmp_path / "t.npy", first_sample=5, max_samples=20), Vocab(100))
    assert isinstance(samples.tokens.base, np.memmap) or isinstance(samples.tokens, np.memmap)
    assert samples.tokens.tolist() == array[5:25, :8].tolist() and samples.ids[0] == "pile:5"


def _overflowing_pointers(folder):
    """Point the 5 sequences near 2**63 bytes, where offset + length wraps around in int64."""
    raw = bytearray((folder / "d.idx").read_bytes())
    start = 34 + 4 * 5  # header, then 5 int32 sizes
    raw[start:start + 8 * 5] = (np.arange(5, dtype=np.int64) * 2 + (2**63 - 20)).tobytes()
    (folder / "d.idx").write_bytes(bytes(raw))


def _token_type_code(folder, code):
    """Change the index's token type code (byte 17, after the header and the version)."""
    raw = bytearray((folder / "d.idx").read_bytes())
    raw[17] = code
    (folder / "d.idx").write_bytes(bytes(raw))


@pytest.mark.parametrize("damage, words", [
    (_overflowing_pointers, "does not fit"),
    (lambda p: (p / "d.idx").unlink(), "no file"),
    (lambda p: (p / "d.idx").write_bytes(b"NOTANIDX" + bytes(40)), "not a Megatron index"),
    (lambda p: (p / "d.idx").write_bytes((p / "d.idx").read_bytes()[:40]), "cut short"),
    (lambda p: (p / "d.bin").write_bytes((p / "d.bin").read_bytes()[:30]), "does not fit"),
    (lambda p: _token_type_code(p, 1), "uint8 tokens .*end at byte 90, but .*d.bin' holds 100 bytes"),
    (lambda p: (p / "d.bin").write_bytes((p / "d.bin").read_bytes() * 2), "holds 200 bytes"),  # another .bin
])
def test_damaged_files_are_refused(tmp_path, damage, words):
    write_megatron(tmp_path / "d", [list(range(10))] * 5)
    damage(tmp_path)
    with pytest.raises(ConfigError, match=words):
        load_samples(config(tmp_path / "d.bin"), Vocab(100))


def test_bad_values_are_refused(tmp_path):
    write_megatron(tmp_path / "d", [list(range(10)), list(range(5)), list(range(90, 100))])
    with pytest.raises(ConfigError, match="sequence 1 has 5 tokens"):
        load_samples(config(tmp_path / "d.bin"), Vocab(100))
    with pytest.raises(ConfigError, match="another tokenizer"):
        load_samples(config(tmp_path / "d.bin", seq_len=4, first_sample=2), Vocab(50))
    with pytest.raises(ConfigError, match="skips them all"):
        load_samples(config(tmp_path / "d.bin", seq_len=4, first_sample=3), Vocab(100))
    (tmp_path / "t.txt").write_text("some text " * 50)
    with pytest.raises(ConfigError, match="'sequences_per_step' applies to .bin"):
        load_samples(config(tmp_path / "t.txt", sequences_per_step=4), Vocab(100))
    write_megatron(tmp_path / "e", [], read_back=False)
    with pytest.raises(ConfigError, match="holds 0 sequences"):
        load_samples(config(tmp_path / "e.bin"), Vocab(100))
    with pytest.raises(ConfigError, match="'first_seen_step' applies to .npy and .bin"):
        load_samples(config(tmp_path / "t.txt", first_seen_step=4), Vocab(100))
    with pytest.raises(ConfigError, match="needs 'sequences_per_step'"):
        load_samples(config(tmp_path / "d.bin", seq_len=4, first_seen_step=4), Vocab(100))


def test_an_audit_of_megatron_data_equals_the_audit_of_the_same_tokens_as_jsonl(tmp_path, make_series, tokenizer,
                                                                                   write_config, run_cli):
    rng = np.random.default_rng(3)
    sequences = rng.integers(0, len(tokenizer), (12, 33)).tolist()
    write_megatron(tmp_path / "pile", sequences)
    (tmp_path / "pile.jsonl").write_text("".join(json.dumps({"id": f"pile:{i}", "tokens": s}) + "\n"
                                                 for i, s in enumerate(sequences)))
    series = make_series()
    reports = []
    for name in ("pile.bin", "pile.jsonl"):
        path = write_config({"series": [{"name": "s", "local": str(series)}],
                             "datasets": [{"name": "pile", "path": str(tmp_path / name), "seq_len": 32}]},
                            name=f"{name}.yaml")
        code, _, err = run_cli("run", path, "-k", "memorization or membership", "--no-cache", "--json",
                               tmp_path / f"{name}.json")
        assert code == 0, err
        reports.append(json.loads((tmp_path / f"{name}.json").read_text()))
    assert [c["results"] for c in reports[0]["series"][0]["checkpoints"]] == \
        [c["results"] for c in reports[1]["series"][0]["checkpoints"]]
    assert reports[0]["datasets"][0]["sha256"] == reports[1]["datasets"][0]["sha256"]
