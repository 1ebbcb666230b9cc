"""Products that depend on the sample text alone, computed once per series when a probe asks:
`pos_tags` (spaCy, cached), `id_mask` (identifier-like tokens), `zlib_len`, `text_of` (--show-text).

On a GPU they are made in a background thread that starts as the series' data is read, so that decoding and
tagging (milliseconds per sample on one core) go on while the first checkpoint loads and its forward pass runs on
the device; a probe that reads them waits for the thread then (`TextProducts`). On the CPU the forward pass has the
cores already, and they are made in line. What the report and the journal keys say about them (`tagger`,
`identifiers`, `text_included`) is decided before, in the caller's thread, without tagging.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from memaudit.engine.catalog import TEXT
from memaudit.engine.identity import engine_fingerprint
from memaudit.engine.store import KeyedStore
from memaudit.errors import ConfigError
from memaudit.hashing import digest
from memaudit.inputs.tagging import TAGS


class TextProducts(Mapping):
    """Data set name -> {product: value}, filled by a background thread; reading it waits for the thread and
    raises what the thread raised (a ConfigError from the tagger is the user's, as if computed in line)."""

    def __init__(self, names, make: Callable[[], dict[str, dict]] | None, background: bool = True):
        self._out: dict[str, dict] = {name: {"text_of": None} for name in names}
        self._error: BaseException | None = None
        self._thread = None
        if make is not None and not background:  # in line: an error is raised here, before anything is scored
            self._merge(make())
        elif make is not None:
            self._thread = threading.Thread(target=self._fill, args=(make,), name="memaudit-text-products",
                                            daemon=True)
            self._thread.start()

    def _merge(self, products: dict[str, dict]) -> None:
        for name, values in products.items():
            self._out[name].update(values)

    def _fill(self, make) -> None:
        try:
            self._merge(make())
        except BaseException as e:  # noqa: BLE001 - handed to the reader, in the main thread
            self._error = e

    def _ready(self) -> dict[str, dict]:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error
        return self._out

    def __getitem__(self, name: str) -> dict:
        return self._ready()[name]

    def __iter__(self):
        return iter(self._ready())

    def __len__(self) -> int:
        return len(self._out)


def text_products(probes, samples, tokenizer, fingerprint, run_cfg, use_cache,
                  background: bool = False) -> tuple[TextProducts, dict]:
    """Per data set name, the text products the probes ask for (with `background`, made in a thread: for a run
    whose forward passes run on a device, while the CPU would otherwise wait); and what the report must say about
    them (`tagger`, `identifiers`, `text_included`). A missing spaCy pipeline that part of speech needs is a
    ConfigError here, before anything is computed."""
    asked = {a for p in probes for a in p.wants} & set(TEXT)
    said: dict = {}
    nlp = label = None
    if asked & {"pos_tags", "id_mask"}:
        from memaudit.inputs.tagging import load_pipeline

        try:
            nlp, label = load_pipeline(run_cfg.spacy_model)
        except ConfigError:
            if "pos_tags" in asked:
                raise
            # identifiers fall back to the documented regex set; the report says so
        if nlp is not None:
            said["tagger"] = label
        if "id_mask" in asked:
            from memaudit.inputs.identifiers import describe_source

            said["identifiers"] = describe_source(with_spacy=nlp is not None)
    show_text = "text_of" in asked and run_cfg.show_text
    if show_text:
        said["text_included"] = True
    wanted = asked & {"zlib_len", "pos_tags", "id_mask"} or show_text

    def make() -> dict[str, dict]:
        # whole records (rows of varied length): each row's own tokens (after the prefix token for their text), the
        # padding after them no tag and no identifier
        out: dict[str, dict] = {name: {} for name in samples}
        if "zlib_len" in asked:
            from memaudit.inputs.texts import zlib_lengths

            for name, s in samples.items():
                out[name]["zlib_len"] = zlib_lengths(s.tokens, tokenizer, s.lengths, first=s.record_start)
        if show_text:
            from memaudit.inputs.texts import sample_texts

            for name, s in samples.items():
                out[name]["text_of"] = sample_texts(s.tokens, tokenizer, redacted=run_cfg.redact,
                                                    spacy_model=run_cfg.spacy_model, lengths=s.lengths,
                                                    first=s.record_start)
        if nlp is not None:
            from memaudit.inputs.tagging import tag_samples

            cache = TagCache(run_cfg.cache_dir, enabled=use_cache)
            for name, s in samples.items():
                shape = (s.tokens.shape[0], s.tokens.shape[1] - 1)
                tags = cache.get(s.sha256, fingerprint, label, shape)  # sha256: whole records' lengths included
                if tags is None:
                    tags = tag_samples(s.tokens, tokenizer, nlp, n_process=run_cfg.spacy_processes, lengths=s.lengths)
                    cache.put(s.sha256, fingerprint, label, tags)
                out[name]["pos_tags"] = tags
        if "id_mask" in asked:
            from memaudit.inputs.identifiers import identifier_mask

            for name, s in samples.items():
                out[name]["id_mask"] = identifier_mask(s.tokens, tokenizer, out[name].get("pos_tags"), s.lengths)
        return out

    # spaCy with several processes starts them itself: not from a thread (a fork beside torch's threads can hang)
    return TextProducts(samples, make if wanted else None, background=background and run_cfg.spacy_processes == 1), said


class TagCache:
    """Tags per (sample tokens, tokenizer, pipeline), stored beside the products cache."""

    def __init__(self, root: Path | None, enabled: bool = True):
        self.store = KeyedStore(root, "tags", ".npz", enabled)

    @staticmethod
    def _key(data_sha: str, tokenizer_fp: str, pipeline: str) -> str:
        return digest("tags", data_sha, tokenizer_fp, pipeline, TAGS, engine_fingerprint())

    def get(self, data_sha: str, tokenizer_fp: str, pipeline: str, shape) -> np.ndarray | None:
        """The cached tags when they are there with `shape`; else None."""
        arrays = self.store.read_arrays(self._key(data_sha, tokenizer_fp, pipeline))
        tags = (arrays or {}).get("tags")
        return tags if tags is not None and tags.shape == tuple(shape) else None

    def put(self, data_sha: str, tokenizer_fp: str, pipeline: str, tags: np.ndarray) -> None:
        """Store the tags of one data set."""
        self.store.write_arrays(self._key(data_sha, tokenizer_fp, pipeline), {"tags": tags})
