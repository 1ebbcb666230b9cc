"""Products that depend on the sample text alone, computed once per series when a probe asks:
`pos_tags` (spaCy, cached), `id_mask` (identifier-like tokens), `zlib_len`, `text_of` (--show-text)."""

from __future__ import annotations

from memaudit.engine.catalog import TEXT
from memaudit.errors import ConfigError


def text_products(probes, samples, tokenizer, fingerprint, run_cfg, use_cache) -> tuple[dict[str, dict], dict]:
    """Per data set name, the text products the probes ask for; and what the report must say about them
    (`tagger`, `identifiers`, `text_included`)."""
    asked = {a for p in probes for a in p.wants} & set(TEXT)
    out: dict[str, dict] = {name: {"text_of": None} for name in samples}
    said: dict = {}
    if "zlib_len" in asked:
        from memaudit.inputs.texts import zlib_lengths

        for name, s in samples.items():
            out[name]["zlib_len"] = zlib_lengths(s.tokens, tokenizer)
    if "text_of" in asked and run_cfg.show_text:
        from memaudit.inputs.texts import sample_texts

        said["text_included"] = True
        for name, s in samples.items():
            out[name]["text_of"] = sample_texts(s.tokens, tokenizer, redacted=run_cfg.redact,
                                                spacy_model=run_cfg.spacy_model)
    if not asked & {"pos_tags", "id_mask"}:
        return out, said
    from memaudit.inputs.tagging import TagCache, load_pipeline, tag_samples

    try:
        nlp, label = load_pipeline(run_cfg.spacy_model)
    except ConfigError:
        if "pos_tags" in asked:
            raise
        nlp = label = None  # identifiers fall back to the documented regex set; the report says so
    if nlp is not None:
        said["tagger"] = label
        cache = TagCache(run_cfg.cache_dir, enabled=use_cache)
        for name, s in samples.items():
            shape = (s.tokens.shape[0], s.tokens.shape[1] - 1)
            tags = cache.get(s.sha256, fingerprint, label, shape)
            if tags is None:
                tags = tag_samples(s.tokens, tokenizer, nlp, n_process=run_cfg.spacy_processes)
                cache.put(s.sha256, fingerprint, label, tags)
            out[name]["pos_tags"] = tags
    if "id_mask" in asked:
        from memaudit.inputs.identifiers import describe_source, identifier_mask

        said["identifiers"] = describe_source(with_spacy=nlp is not None)
        for name, s in samples.items():
            out[name]["id_mask"] = identifier_mask(s.tokens, tokenizer, out[name].get("pos_tags"))
    return out, said
