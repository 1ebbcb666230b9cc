"""Every rule of a series' `reference` twin (Hubble's minimal pairs: the same model trained without the inserted
data), in one place:

- what the yaml may say (`check_references`, run by the config's validator: the twin is a series of the yaml,
  not the series itself, and has no reference of its own);
- what the resolved series must be (`check_resolved`, before any checkpoint loads: one tokenizer for both, and a
  twin checkpoint at every step the series is compared at);
- which twin checkpoint each checkpoint is compared with (`pairs`: the same step, or the twin's last), which the
  start-up check and the twin probe both read.
"""

from __future__ import annotations

from memaudit.errors import ConfigError, did_you_mean


def check_references(series: list) -> None:
    """The static rules, over the yaml's series (SeriesConfig); ValueError (the config's validator turns it into
    a ConfigError) naming the first series that breaks one."""
    names = [s.display_name for s in series]
    for s in series:
        if s.reference is None:
            continue
        if s.reference not in names:
            raise ValueError(f"series '{s.display_name}': reference '{s.reference}' is no series of the yaml."
                             f"{did_you_mean(s.reference, names)} Series: {', '.join(names)}")
        if s.reference == s.display_name:
            raise ValueError(f"series '{s.display_name}' names itself as its reference: name its twin")
        twin = next(t for t in series if t.display_name == s.reference)
        if twin.reference is not None:
            raise ValueError(f"series '{s.display_name}' refers to '{s.reference}', which refers to "
                             f"'{twin.reference}': a reference must be a series without a reference of its own")


def pairs(steps: list, twin_steps: list, reference_at: str) -> tuple[list[tuple[int, int]], list]:
    """(index of a checkpoint, index of the twin's it is compared with) for every checkpoint that has one, and the
    steps of those that have none: the twin's checkpoint at the same step (`same_step`), or its last (`last`)."""
    if reference_at == "last":
        found = [(i, len(twin_steps) - 1) for i in range(len(steps))] if twin_steps else []
    else:
        found = [(i, twin_steps.index(step)) for i, step in enumerate(steps) if step in twin_steps]
    compared = {i for i, _ in found}
    return found, [step for i, step in enumerate(steps) if i not in compared]


def check_resolved(resolved: list) -> None:
    """A series and its `reference` twin share a tokenizer, and the twin has a checkpoint at every step the series
    is compared at; else a ConfigError before any checkpoint loads. `resolved`: (SeriesConfig, [Checkpoint]) per
    series."""
    from memaudit.inputs.sources import available, load_tokenizer, tokenizer_fingerprint

    by_name = {s.display_name: (s, checkpoints) for s, checkpoints in resolved}
    for s, checkpoints in resolved:
        if s.reference is None or not checkpoints:
            continue
        _, twin = by_name[s.reference]
        if not twin:
            continue
        mine, theirs = (tokenizer_fingerprint(load_tokenizer(available(cs)[0])) for cs in (checkpoints, twin))
        if mine != theirs:
            raise ConfigError(f"Series '{s.display_name}' and its reference '{s.reference}' tokenize differently "
                              f"(fingerprints {mine} vs {theirs}): a twin must share the tokenizer and vocabulary, "
                              "so the same samples mean the same tokens to both.")
        twin_steps = [c.step for c in twin]
        _, missing = pairs([c.step for c in checkpoints], twin_steps, s.reference_at)
        if missing:
            step = missing[0]
            name = next(c.name for c in checkpoints if c.step == step)
            near = min((x for x in twin_steps if x is not None), key=lambda x: abs(x - (step or 0)), default=None)
            raise ConfigError(f"Series '{s.display_name}': its reference '{s.reference}' has no checkpoint at "
                              f"step {step} ({name}); the nearest is step {near}. Audit the same steps in "
                              "both, or set 'reference_at: last' to compare with the twin's last checkpoint.")


def require_reference(series: list) -> None:
    """The twin probe needs a series with a reference; a ConfigError saying how to name one."""
    if not any(s.reference for s in series):
        raise ConfigError("The twin probe compares a series with its twin, but no series of the yaml names one: add "
                          "'reference: <twin series>' to the series that saw the inserted data.")
