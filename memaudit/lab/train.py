"""Train tiny GPT-NeoX (causal) or BERT (masked) series with a ledger; save them as ordinary local checkpoint series.

Layout of the output folder:
    OUT/lab.json                  the lab config and its fingerprint
    OUT/checkpoints.yaml          an audit config for everything below (`memaudit run OUT/checkpoints.yaml`)
    OUT/<run>/step-<N>/           HF checkpoints (safetensors + tokenizer), N = updates done
    OUT/<run>/data/*.jsonl        train / valid / special samples as token ids, with their ids
    OUT/<run>/ledger.json         every update's samples, epochs, interventions (written last)
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from memaudit.atomic import atomic_write_text
from memaudit.errors import ConfigError
from memaudit.inputs.ledger import Intervention, Ledger, Update
from memaudit.lab.config import BUILTIN_CORPUS, LabConfig, RunSpec

MEMORY_FRACTION = 0.5  # refuse runs estimated to need more than this share of available memory


@dataclass
class Splits:
    """Token samples (lists of ids) for one tokenizer; planted canary samples come last in `train`."""

    train: list[list[int]]
    valid: list[list[int]]
    special: list[list[int]]
    canary_rows: dict[str, list[int]] | None = None  # canary id -> its rows in train
    perturb: list[list[int]] = field(default_factory=list)  # the perturbation set (n_perturb samples)


def canary_file(lab: LabConfig) -> Path | None:
    """The canary file the lab plants, if any."""
    if lab.canaries is None:
        return None
    if lab.canaries.file == "builtin":
        return Path(str(resources.files("memaudit.lab") / "canaries.jsonl"))
    return Path(lab.canaries.file)


def read_corpus(corpus: str) -> str:
    """The built-in excerpt or a UTF-8 text file."""
    if corpus == BUILTIN_CORPUS:
        return (resources.files("memaudit.lab") / "corpus" / "wikitext2_excerpt.txt").read_text(encoding="utf-8")
    path = Path(corpus)
    if not path.is_file():
        raise ConfigError(f"Lab corpus '{path}' does not exist. Use 'corpus: builtin' or a path to a text file.")
    from memaudit.atomic import read_text_file

    return read_text_file(path, "lab corpus")


def make_splits(lab: LabConfig, tokenizer, text: str) -> Splits:
    """Cut the corpus into consecutive samples: train, then valid, then special, then the text that
    follows each planted canary (`copies` samples per canary, appended to train); with `holdout: random`
    the samples are shuffled (one fixed order for every seed) before they are split."""
    from memaudit.inputs.canaries import read_canaries

    canaries = read_canaries(canary_file(lab)) if lab.canaries else []
    stream = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    n_planted = len(canaries) * (lab.canaries.copies if lab.canaries else 0)
    need = lab.n_samples + lab.n_valid + lab.n_special + lab.n_perturb + n_planted
    have = len(stream) // lab.seq_len
    if have < need:
        raise ConfigError(f"The corpus gives {len(stream)} tokens, {have} samples of seq_len={lab.seq_len}, but the "
                          f"lab asks for {need} (n_samples + n_valid + n_special). Use a larger corpus, or lower "
                          "seq_len or the sample counts.")
    chunks = [stream[i * lab.seq_len:(i + 1) * lab.seq_len] for i in range(need)]
    if lab.holdout == "random":  # train and held-out samples interleaved over the corpus (same text around both)
        import random

        random.Random(0).shuffle(chunks)
    a, b, c = lab.n_samples, lab.n_samples + lab.n_valid, lab.n_samples + lab.n_valid + lab.n_special
    d = c + lab.n_perturb
    splits = Splits(train=chunks[:a], valid=chunks[a:b], special=chunks[b:c], canary_rows={}, perturb=chunks[c:d])
    fillers = iter(chunks[d:])
    for canary in canaries:
        planted = tokenizer(canary.text(canary.secret), add_special_tokens=False)["input_ids"]
        if len(planted) >= lab.seq_len:
            raise ConfigError(f"Canary '{canary.id}' is {len(planted)} tokens, as long as a sample "
                              f"(seq_len={lab.seq_len}). Shorten it or raise seq_len.")
        for _ in range(lab.canaries.copies):
            splits.canary_rows.setdefault(canary.id, []).append(len(splits.train))
            splits.train.append((planted + [tokenizer.eos_token_id] + next(fillers))[:lab.seq_len])
    return splits


def perturb_levels(lab: LabConfig) -> list[int]:
    """The duplication level of each perturbation sample: the levels in turn."""
    return [lab.dup_levels[i % len(lab.dup_levels)] for i in range(lab.n_perturb)]


def _insert(lab: LabConfig, spec: RunSpec, updates: list[Update], seed: int) -> None:
    """Add each perturbation sample to as many training updates as its level, drawn (seeded) from the
    updates in the run's insertion phase."""
    import random

    train = [u for u in updates if u.kind == "train"]
    start, end = (int(round(f * len(train))) for f in spec.insert.phase)
    window = train[start:max(end, start + 1)]
    rng = random.Random(seed * 1_000_003 + 17)
    for i, level in enumerate(perturb_levels(lab)):
        for u in rng.choices(window, k=level):
            u.sample_ids.append(f"perturb:{i}")


def id_tokens(n: int) -> list[str]:
    """The new vocabulary entries of the unique-identifier runs."""
    return [f"<id_{i}>" for i in range(n)]


def plan_updates(lab: LabConfig, spec: RunSpec, n_train: int | None = None,
                 seed: int | None = None) -> tuple[list[Update], list[int], set[int]]:
    """Every update in order (deterministic in the seed, default the lab's), the epoch-end steps and the
    steps to save at."""
    n_train = n_train or lab.n_samples
    seed = lab.seed if seed is None else seed
    import torch

    injections: dict[int, int] = {}
    if spec.special is not None:
        for e in spec.special.epochs():
            injections[e] = injections.get(e, 0) + 1
    special_ids = [f"special:{i}" for i in range(lab.n_special)]
    n_train = min(n_train, spec.n_train or n_train)  # a smaller corpus: its first n_train samples
    rows = list(range(lab.n_forget, n_train)) if spec.retrain else list(range(n_train))  # retrain: not the forget set
    updates, epoch_ends, save = [], [], {0}
    for epoch in range(1, lab.epochs + 1):
        for _ in range(injections.get(epoch, 0)):
            updates.append(Update(step=len(updates) + 1, epoch=epoch, kind="special", sample_ids=special_ids))
        if injections.get(epoch):
            save.add(len(updates))  # right after the special batch
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        for start in range(0, len(rows), lab.batch_size):
            batch = [rows[i] for i in order[start:start + lab.batch_size].tolist()]
            updates.append(Update(step=len(updates) + 1, epoch=epoch, sample_ids=[f"train:{r}" for r in batch]))
        epoch_ends.append(len(updates))
        if epoch % lab.save_every == 0 or epoch == lab.epochs:
            save.add(len(updates))
    if spec.insert is not None:
        _insert(lab, spec, updates, seed)
    if lab.save_every_steps:
        save |= set(range(0, len(updates) + 1, lab.save_every_steps))
    if spec.unlearn is not None:  # after training: every update on the whole forget set
        forget = [f"train:{i}" for i in range(lab.n_forget)]
        for i in range(1, spec.unlearn.steps + 1):
            updates.append(Update(step=len(updates) + 1, epoch=lab.epochs, kind="unlearn", sample_ids=forget))
            if i % spec.unlearn.save_every == 0 or i == spec.unlearn.steps:
                save.add(len(updates))
    return updates, epoch_ends, save


MASK_TOKEN = "[MASK]"
MLM_FRACTION = 0.15


def model_class(spec: RunSpec):
    """GPT-NeoX for causal runs, BERT for masked runs."""
    from transformers import BertForMaskedLM, GPTNeoXForCausalLM

    return BertForMaskedLM if spec.objective == "masked" else GPTNeoXForCausalLM


def model_config(lab: LabConfig, spec: RunSpec, vocab_size: int):
    """The paper's settings: dropout 0. GPT-NeoX, or BERT for masked runs."""
    from transformers import BertConfig, GPTNeoXConfig

    if spec.objective == "masked":
        return BertConfig(vocab_size=vocab_size, hidden_size=spec.width, num_hidden_layers=spec.layers,
                          num_attention_heads=spec.heads, intermediate_size=4 * spec.width,
                          max_position_embeddings=lab.seq_len, hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0, type_vocab_size=1)
    return GPTNeoXConfig(vocab_size=vocab_size, hidden_size=spec.width, num_hidden_layers=spec.layers,
                         num_attention_heads=spec.heads, intermediate_size=4 * spec.width,
                         max_position_embeddings=lab.seq_len, hidden_dropout=0.0, attention_dropout=0.0,
                         eos_token_id=0, bos_token_id=0, tie_word_embeddings=False)


def estimate_bytes(lab: LabConfig, spec: RunSpec, vocab_size: int) -> tuple[int, int]:
    """(parameters, bytes) for training: weights, grads, 2 Adam moments, activations and logits (float32)."""
    w, layers = spec.width, spec.layers
    params = 2 * vocab_size * w + layers * (12 * w * w + 13 * w) + 2 * w
    tokens = lab.batch_size * lab.seq_len
    activations = tokens * layers * (34 * w + 5 * spec.heads * lab.seq_len) * 4
    logits = tokens * vocab_size * 4 * 3
    return params, params * 4 * 4 + activations + logits


def check_memory(lab: LabConfig, vocab_size: int) -> None:
    """Refuse, with the estimate, runs that would not fit in memory."""
    import psutil

    available = psutil.virtual_memory().available
    for spec in lab.runs:
        params, need = estimate_bytes(lab, spec, vocab_size)
        if need > MEMORY_FRACTION * available:
            raise ConfigError(
                f"Run '{spec.name}' ({params / 1e6:.1f}M parameters, layers={spec.layers}, width={spec.width}) "
                f"needs about {need / 2**30:.1f} GiB to train with batch_size={lab.batch_size} and "
                f"seq_len={lab.seq_len}; this machine has {available / 2**30:.1f} GiB available. Use a smaller "
                "width or fewer layers, or a smaller batch.")


def run_lab(lab: LabConfig, out: Path | None = None, overwrite: bool = False, console=None) -> Path:
    """Train every run of the lab into `out` (resuming or skipping what is already there)."""
    import torch

    from memaudit.lab.tokenizer import train_bpe

    out = Path(out or lab.out)
    replace = _check_output(out, lab, overwrite)
    text = read_corpus(lab.corpus)
    base_tokenizer = train_bpe([text], lab.vocab_size)
    splits = make_splits(lab, base_tokenizer, text)
    check_memory(lab, len(base_tokenizer) + len(splits.train))
    _claim_output(out, lab, replace)  # only a lab that passed every check marks the folder as its own
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for spec, seed, name in lab.replicates():
        if (out / name / "ledger.json").is_file():
            continue  # finished earlier
        tokenizer = base_tokenizer
        if spec.ids != "none" or spec.objective == "masked":
            import copy

            tokenizer = copy.deepcopy(base_tokenizer)
        if spec.objective == "masked":
            tokenizer.add_special_tokens({"mask_token": MASK_TOKEN})
        if spec.ids != "none":
            tokenizer.add_tokens(id_tokens(len(splits.train)), special_tokens=True)
        train_run(lab, spec, tokenizer, splits, out / name, console, seed)
    write_audit_config(lab, out)
    return out


def _check_output(out: Path, lab: LabConfig, overwrite: bool) -> bool:
    """Whether `out` must be emptied before this lab trains into it; refuse a folder that holds something
    else unless `overwrite`. Changes nothing on disk."""
    marker = out / "lab.json"
    if marker.is_file():
        try:
            previous = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = {}
        if isinstance(previous, dict) and previous.get("fingerprint") == lab.fingerprint():
            return False  # same lab: resume / skip finished runs
        if not overwrite:
            raise ConfigError(f"'{out}' already holds a different lab series (fingerprint "
                              f"{previous.get('fingerprint') if isinstance(previous, dict) else None}, this config "
                              f"{lab.fingerprint()}). Choose another 'out' folder, or pass --overwrite to replace it.")
        return True
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise ConfigError(f"'{out}' exists and is not a lab output folder. Choose another 'out', or pass "
                              "--overwrite to replace its contents.")
        return True
    return False


def _claim_output(out: Path, lab: LabConfig, replace: bool) -> None:
    """Empty `out` when asked, and mark it as this lab's (the fingerprint lets a re-run resume)."""
    if replace:
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "lab.json", json.dumps({"fingerprint": lab.fingerprint(),
                                                   "config": lab.model_dump(mode="json")}, indent=2))


def _write_jsonl(path: Path, prefix: str, samples: list[list[int]], first: int = 0,
                 steps: dict[str, int] | None = None) -> None:
    """Samples as JSONL records `{id, tokens}`, with `seen_at_step` where `steps` (id -> step) has the id."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def record(i, s):
        sid = f"{prefix}:{i}"
        return {"id": sid, "tokens": s, **({"seen_at_step": steps[sid]} if steps and sid in steps else {})}

    atomic_write_text(path, "".join(json.dumps(record(i, s)) + "\n" for i, s in enumerate(samples, first)))


def train_run(lab: LabConfig, spec: RunSpec, tokenizer, splits: Splits, folder: Path, console=None,
              seed: int | None = None) -> Ledger:
    """Train one series (initialization and batch order from `seed`, default the lab's), saving checkpoints
    and, at the end, its ledger."""
    seed = lab.seed if seed is None else seed
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    Model = model_class(spec)
    train = splits.train
    if spec.ids == "prefix":
        ids = tokenizer.convert_tokens_to_ids(id_tokens(len(train)))
        train = [[ids[i]] + s[:-1] for i, s in enumerate(train)]  # same length, own ID first
    updates, epoch_ends, save_steps = plan_updates(lab, spec, len(train), seed)
    once = {}  # one epoch: each training sample's step goes into the data (the profile's and Parquet's seen_at_step)
    if lab.epochs == 1:
        once = {sid: u.step for u in updates if u.kind == "train" for sid in u.sample_ids}
    for name, samples in (("train", train), ("valid", splits.valid), ("special", splits.special)):
        _write_jsonl(folder / "data" / f"{name}.jsonl", name, samples, steps=once if name == "train" else None)
    if lab.n_perturb:  # every run gets the set (the standard twin is audited on it too), with each level
        levels = perturb_levels(lab)
        atomic_write_text(folder / "data" / "perturb.jsonl", "".join(
            json.dumps({"id": f"perturb:{i}", "tokens": s, "dup": levels[i]}) + "\n" for i, s in enumerate(splits.perturb)))
    if lab.n_forget:  # the unlearning audit's sets, with the training set's ids
        _write_jsonl(folder / "data" / "forget.jsonl", "train", train[:lab.n_forget])
        _write_jsonl(folder / "data" / "retain.jsonl", "train", train[lab.n_forget:], first=lab.n_forget)
    if lab.canaries:
        atomic_write_text(folder / "data" / "canaries.jsonl", canary_file(lab).read_text(encoding="utf-8"))

    done = _resume_step(folder)
    if done:
        model = Model.from_pretrained(folder / f"step-{done}")
    else:
        torch.manual_seed(seed)
        model = Model(model_config(lab, spec, len(tokenizer)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lab.lr, weight_decay=0.0)
    if done:
        _load_optimizer(folder, model, optimizer)
    else:
        _save(folder, 0, model, tokenizer, optimizer)
    data = {"train": torch.tensor(train), "special": torch.tensor(splits.special or [[0]]),
            "perturb": torch.tensor(splits.perturb or [[0]])}  # (samples, seq_len) each

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(TextColumn(f"training {folder.name}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console, transient=True,
                  disable=console is None or not console.is_terminal) as progress:
        task = progress.add_task("", total=len(updates), completed=done, info="")
        model.train()
        reference = None  # NPO's model at the start of unlearning
        for update in updates[done:]:
            batch = torch.stack([data[s.split(":")[0]][int(s.split(":")[1])] for s in update.sample_ids])  # (batch, seq)
            for group in optimizer.param_groups:
                group["lr"] = lab.lr * min(1.0, update.step / lab.warmup_steps) if lab.warmup_steps else lab.lr
            if update.kind == "unlearn":
                from memaudit.lab.unlearn import npo_reference, unlearning_loss

                if spec.unlearn.method == "npo" and reference is None:
                    reference = npo_reference(Model, folder, updates)
                for group in optimizer.param_groups:
                    group["lr"] = spec.unlearn.lr or lab.lr
                loss = unlearning_loss(model, batch, spec.unlearn, reference)
            elif spec.objective == "masked":
                inputs, labels = mlm_batch(batch, tokenizer.mask_token_id, seed, update.step)
                loss = model(input_ids=inputs, labels=labels).loss
            else:
                loss = model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if update.step in save_steps:
                _save(folder, update.step, model, tokenizer, optimizer)
            progress.update(task, advance=1, info=f"epoch {update.epoch} loss {loss.item():.3f}")
    if console is not None and not console.is_terminal and updates[done:]:  # logs and notebooks: a line per run
        console.print(f"memaudit lab: trained {folder.name}: {len(updates)} updates, final loss {loss.item():.3f}",
                      highlight=False, soft_wrap=True)

    interventions = []
    if spec.special is not None:
        steps = [u.step for u in updates if u.kind == "special"]
        interventions.append(Intervention(kind="special_batch", steps=steps, epochs=spec.special.epochs(),
                                          detail=spec.special.model_dump()))
    if spec.ids != "none":
        interventions.append(Intervention(kind="unique_ids" if spec.ids == "prefix" else "vocab_control",
                                          detail={"new_tokens": len(train)}))
    if spec.unlearn is not None:
        from memaudit.lab.unlearn import relearn

        detail = {**spec.unlearn.model_dump(exclude={"relearn"}), "forget": [f"train:{i}" for i in range(lab.n_forget)]}
        if spec.unlearn.relearn is not None:
            detail["relearn"] = relearn(model, tokenizer, data["train"][:lab.n_forget], spec.unlearn.relearn,
                                        lab.lr, seed)
        interventions.append(Intervention(kind="unlearning", steps=[u.step for u in updates if u.kind == "unlearn"],
                                          detail=detail))
    if spec.retrain:
        interventions.append(Intervention(kind="retrain", detail={"left_out": [f"train:{i}"
                                                                               for i in range(lab.n_forget)]}))
    if splits.canary_rows:
        interventions.append(Intervention(kind="canaries", detail={
            "copies": lab.canaries.copies,
            "samples": {cid: [f"train:{r}" for r in rows] for cid, rows in splits.canary_rows.items()}}))
    run = {**spec.model_dump(), **({"seed": seed} if lab.seeds is not None else {})}
    ledger = Ledger(series=folder.name, n_params=sum(p.numel() for p in model.parameters()), run=run,
                    lab_runs=[r.model_dump() for r in lab.runs],
                    steps_per_epoch=math.ceil(len(train) / lab.batch_size), epochs=lab.epochs,
                    updates=updates, epoch_end_steps=epoch_ends, interventions=interventions)
    atomic_write_text(folder / "ledger.json", ledger.model_dump_json(indent=1))
    for leftover in folder.glob(".resume*"):
        leftover.unlink()
    return ledger


def mlm_batch(batch, mask_token_id: int, seed: int, step: int):
    """Masked-LM inputs and labels: MLM_FRACTION of the positions, chosen by a generator seeded with the
    update, become the mask token; only they are predicted (labels -100 elsewhere)."""
    import torch

    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    chosen = torch.rand(batch.shape, generator=generator) < MLM_FRACTION  # (batch, seq_len)
    chosen[:, 0] |= ~chosen.any(dim=1)  # at least one position per sample
    inputs = batch.masked_fill(chosen, mask_token_id)
    labels = batch.masked_fill(~chosen, -100)
    return inputs, labels


def _save(folder: Path, step: int, model, tokenizer, optimizer) -> None:
    """Write `step-N/` via a temp folder and rename, then the resume state (optimizer) for step N."""
    import torch
    from safetensors.torch import save_file

    final = folder / f"step-{step}"
    tmp = folder / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    state = {}
    for i, p in enumerate(model.parameters()):
        for key, value in optimizer.state.get(p, {}).items():
            state[f"{i}.{key}"] = value.detach().clone().reshape(-1) if key == "step" else value.detach().clone()
    save_file(state or {"empty": torch.zeros(1)}, folder / ".resume.tmp")
    (folder / ".resume.tmp").replace(folder / ".resume.safetensors")
    atomic_write_text(folder / ".resume.json", json.dumps({"step": step}))


def _resume_step(folder: Path) -> int:
    """The step an interrupted run can continue from (0: start afresh)."""
    marker = folder / ".resume.json"
    if not marker.is_file():
        return 0
    step = json.loads(marker.read_text())["step"]
    if not (folder / f"step-{step}" / "model.safetensors").is_file():
        raise ConfigError(f"Cannot resume '{folder}': its resume state names step {step} but step-{step}/ is "
                          "missing. Delete the folder (or pass --overwrite) to train it again.")
    return step


def _load_optimizer(folder: Path, model, optimizer) -> None:
    """Restore AdamW's moments and step counts saved next to the last checkpoint."""
    from safetensors.torch import load_file

    state = load_file(folder / ".resume.safetensors")
    for i, p in enumerate(model.parameters()):
        optimizer.state[p] = {"step": state[f"{i}.step"].reshape(()), "exp_avg": state[f"{i}.exp_avg"],
                              "exp_avg_sq": state[f"{i}.exp_avg_sq"]}


def write_audit_config(lab: LabConfig, out: Path) -> Path:
    """`OUT/checkpoints.yaml`: an audit of every run, with the lab's data sets, ready for `memaudit run`."""
    k = m = min(32, lab.seq_len // 2)
    datasets = [{"name": "train", "path": "{series}/data/train.jsonl", "role": "train", "seq_len": lab.seq_len}]
    if lab.n_valid:
        datasets.append({"name": "valid", "path": "{series}/data/valid.jsonl", "role": "valid", "seq_len": lab.seq_len})
    if lab.n_special and any(r.special for r in lab.runs):
        datasets.append({"name": "special", "path": "{series}/data/special.jsonl", "role": "special",
                         "seq_len": lab.seq_len})
    if lab.canaries:
        datasets.append({"name": "canaries", "path": "{series}/data/canaries.jsonl", "role": "canary"})
    unlearning = {}
    if lab.n_forget:
        datasets += [{"name": "forget", "path": "{series}/data/forget.jsonl", "role": "forget", "seq_len": lab.seq_len},
                     {"name": "retain", "path": "{series}/data/retain.jsonl", "role": "retain", "seq_len": lab.seq_len},
                     {"name": "holdout", "path": "{series}/data/valid.jsonl", "role": "holdout", "seq_len": lab.seq_len}]
        reference = next((name for spec, _, name in lab.replicates() if spec.retrain), None)
        unlearning = {"unlearning": {"reference": reference}} if reference else {}
    if lab.save_every_steps and lab.epochs == 1 and lab.n_valid:  # each sample seen once, checkpoints during it
        unlearning["memorization_profile"] = {"outcome": "loglik"}
    if lab.n_perturb:  # Hubble in miniature: the perturbation set by level, each perturbed run against its twin
        datasets.append({"name": "perturb", "path": "{series}/data/perturb.jsonl", "role": "other",
                         "seq_len": lab.seq_len, "group_by": "dup"})
        if any(spec.reference for spec in lab.runs):
            unlearning["twin"] = {}
        unlearning["generation"] = {"prefixes": [k], "new_tokens": m}  # Hubble's verbatim tasks: what the model writes
    twin_of = {(spec.name, seed): name for spec, seed, name in lab.replicates()}
    config = {
        "series": [{"name": name, "local": name,
                    **({"reference": twin_of[spec.reference, seed]} if spec.reference else {})}
                   for spec, seed, name in lab.replicates()],
        "datasets": datasets,
        "probes": {"memorization": {"k": k, "m": m}, "memorized_strings": {"k": k, "m": m},
                   "extraction_risk": {"pairs": [[k, m]]}, "memorization_series": {"taus": [0.5, 0.9]}, **unlearning},
        "checks": [{"name": "held-out text is not memorized", "metric": "memorization.M", "dataset": "valid",
                    "at": "max", "max": 0.5}] if lab.n_valid else [],
        "run": {"batch_size": 32},
    }
    path = out / "checkpoints.yaml"
    atomic_write_text(path, "# Written by `memaudit lab`: audits every series trained in this folder.\n"
                      + yaml.safe_dump(config, sort_keys=False))
    return path
