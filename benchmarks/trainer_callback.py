"""What MemauditCallback costs a transformers Trainer run, on the CPU.

    python benchmarks/trainer_callback.py [--steps 200] [--every 50] [--probes all|memorization]

One run: a small GPT-NeoX (4 layers, width 128, vocabulary 1024, the demo's "medium") trained on 64
samples of 64 tokens of the shipped WikiText-2 excerpt, batch 8; the same training without the callback,
with it at its defaults (no `every_steps`: an audit on each save and one at the end; the Trainer saves
every `--every` steps here) and with `every_steps=--every`. The callback audits the 64 training samples
and 32 held-out ones with every standard probe (or only memorization). Prints seconds per training step,
seconds per audit and the slowdown of the whole run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from memaudit.integrations import MemauditCallback  # noqa: E402
from memaudit.lab.tokenizer import train_bpe  # noqa: E402
from memaudit.lab.train import read_corpus  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--probes", choices=["all", "memorization"], default="all")
    args = parser.parse_args()
    from transformers import (
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    text = read_corpus("builtin")
    tokenizer = train_bpe([text], vocab_size=1024)
    ids = torch.tensor(tokenizer(text[:200000], add_special_tokens=False)["input_ids"][:96 * 64]).view(96, 64)
    train, valid = ids[:64], ids[64:]
    data = {"train": {"data": train.tolist(), "seq_len": 64},
            "valid": {"data": valid.tolist(), "seq_len": 64, "role": "valid"}}
    probes = None if args.probes == "all" else ["memorization"]

    def run(callback_settings: dict | None, save: bool, out: str) -> tuple[float, MemauditCallback | None]:
        torch.manual_seed(0)
        config = GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                               intermediate_size=512, max_position_embeddings=64)
        arguments = TrainingArguments(output_dir=out, max_steps=args.steps, per_device_train_batch_size=8,
                                      learning_rate=2e-3, logging_steps=args.every, report_to="none", use_cpu=True,
                                      disable_tqdm=True, seed=0, save_strategy="steps" if save else "no",
                                      save_steps=args.every)
        trainer = Trainer(model=GPTNeoXForCausalLM(config), args=arguments, data_collator=default_data_collator,
                          train_dataset=[{"input_ids": s, "labels": s} for s in train], processing_class=tokenizer)
        callback = None
        if callback_settings is not None:
            callback = MemauditCallback(datasets=data, probes=probes, **callback_settings).attach(trainer)
        t = time.perf_counter()
        trainer.train()
        return time.perf_counter() - t, callback

    with tempfile.TemporaryDirectory() as tmp:
        bare, _ = run(None, False, f"{tmp}/bare")
        saving, _ = run(None, True, f"{tmp}/saving")
        defaults, on_save = run({}, True, f"{tmp}/defaults")
        every, each = run({"every_steps": args.every}, False, f"{tmp}/every")
    step_s = bare / args.steps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.steps} steps of 8 x 64 tokens; "
          f"probes: {args.probes}; the audit scores 96 samples x 64 tokens")
    print(f"training alone                              {bare:7.2f} s   {step_s * 1000:6.1f} ms/step")
    print(f"training, saving every {args.every} steps              {saving:7.2f} s")
    for name, seconds, base, cb in (("+ callback, defaults (on save, at end)", defaults, saving, on_save),
                                    (f"+ callback, every_steps={args.every} (no saves)", every, bare, each)):
        audits = cb.audit_seconds
        mean = sum(audits) / len(audits)
        print(f"{name:43s} {seconds:7.2f} s   x{seconds / base:.3f} (the same run without the callback); "
              f"{len(audits)} audits, {mean:.3f} s each = {mean / step_s:.1f} training steps; setup "
              f"{cb.setup_seconds:.2f} s")


if __name__ == "__main__":
    main()
