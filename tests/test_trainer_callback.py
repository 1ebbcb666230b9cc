"""MemauditCallback in a tiny transformers Trainer run on the CPU."""

import json
import warnings

import pytest
import torch
from conftest import tiny_model

from memaudit.errors import ConfigError
from memaudit.integrations import CheckFailedWarning, MemauditCallback


@pytest.fixture
def trainer_for(tmp_path, tokenizer, corpus_text):
    """A Trainer of a tiny GPT-NeoX on 16 samples of 32 tokens, and the texts those samples come from."""
    from transformers import Trainer, TrainingArguments, default_data_collator

    ids = tokenizer(corpus_text[:20000], add_special_tokens=False)["input_ids"][:16 * 32]
    samples = torch.tensor(ids).view(16, 32)  # (samples, seq)
    train = [{"input_ids": s, "labels": s} for s in samples]

    def make(max_steps=24, **args):
        arguments = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=max_steps,
                                      per_device_train_batch_size=4, learning_rate=5e-3, logging_steps=4,
                                      save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
                                      seed=0, **args)
        model = tiny_model("gpt_neox", len(tokenizer), seed=0, context=64).train()
        return Trainer(model=model, args=arguments, train_dataset=train, processing_class=tokenizer,
                       data_collator=default_data_collator)

    return make, {"train": {"data": [list(map(int, s)) for s in samples], "seq_len": 32}}


def test_the_callback_audits_logs_and_writes_the_series(trainer_for, tmp_path):
    make, data = trainer_for
    trainer = make()
    callback = MemauditCallback(datasets=data, probes=["memorization", "memorization_series"],
                                params={"memorization": {"k": 8, "m": 8}}, every_steps=8).attach(trainer)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    assert trainer.state.global_step == 24 and trainer.model.training
    logged = [h for h in trainer.state.log_history if "memaudit/train/memorization.M" in h]
    assert [h["step"] for h in logged] == [8, 16, 24]
    assert [h["step"] for h in trainer.state.log_history if "loss" in h] == [4, 8, 12, 16, 20, 24]  # not swallowed
    assert all({"memaudit/train/memorization.loss", "memaudit/checks_failed"} <= h.keys() for h in logged)
    report = json.loads((tmp_path / "out" / "memaudit-report.json").read_text())
    series = report["series"][0]
    assert [c["step"] for c in series["checkpoints"]] == [8, 16, 24]
    M = [c["results"]["memorization"]["train"]["M"] for c in series["checkpoints"]]
    assert [h["memaudit/train/memorization.M"] for h in logged] == M
    assert series["results"]["memorization_series"]["train"]["M"] == M  # series probes on the global steps
    assert M[-1] > M[0]  # the model learns its 16 samples
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert len(callback.audit_seconds) == 3


def test_a_failing_check_stops_training_when_asked(trainer_for):
    make, data = trainer_for
    trainer = make()
    checks = [{"metric": "memorization.loss", "max": 0.5, "name": "train loss is low"}]  # fails at once
    MemauditCallback(datasets=data, probes=["memorization"], checks=checks, every_steps=4,
                     on_fail="stop").attach(trainer)
    with pytest.warns(CheckFailedWarning, match="stopping training at step 4.*train loss is low|memorization.loss"):
        trainer.train()
    assert trainer.state.global_step == 4


def test_a_failing_check_warns_once_and_training_goes_on(trainer_for):
    make, data = trainer_for
    trainer = make(max_steps=8)
    checks = [{"metric": "memorization.loss", "max": 0.5}]
    callback = MemauditCallback(datasets=data, probes=["memorization"], checks=checks, every_steps=4)
    trainer.add_callback(callback)  # not attached: metrics go to the log history only
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    assert trainer.state.global_step == 8
    assert sum(issubclass(w.category, CheckFailedWarning) for w in caught) == 1  # new failures only
    assert any("not attached" in str(w.message) for w in caught)
    assert [h["step"] for h in trainer.state.log_history if "memaudit/checks_failed" in h] == [4, 8]
    assert callback.report.status == "failed"


@pytest.mark.parametrize("settings, words", [({"every_steps": 0}, "every_steps"), ({"on_fail": "halt"}, "on_fail"),
                                             ({"evry_steps": 5}, "Did you mean 'every_steps'")])
def test_bad_settings_are_refused_when_the_callback_is_made(settings, words):
    with pytest.raises(ConfigError, match=words):
        MemauditCallback(datasets={"train": ["text"]}, **settings)


def test_bad_data_is_refused_before_the_first_step(trainer_for):
    make, _ = trainer_for
    trainer = make()
    MemauditCallback(datasets={"train": []}, every_steps=4).attach(trainer)
    with pytest.raises(ConfigError, match="is empty"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_a_report_path_over_a_data_set_is_refused_before_the_first_step(trainer_for, text_file):
    make, _ = trainer_for
    trainer = make()
    before = text_file.read_text()
    MemauditCallback(datasets={"train": str(text_file)}, every_steps=4, report_path=text_file).attach(trainer)
    with pytest.raises(ConfigError, match="would overwrite data set 'train'"):
        trainer.train()
    assert text_file.read_text() == before and trainer.state.global_step == 0


def test_samples_longer_than_the_context_are_refused_before_the_first_step(trainer_for, text_file):
    make, _ = trainer_for
    trainer = make()  # a model of 64 positions
    MemauditCallback(datasets={"train": {"path": str(text_file), "seq_len": 100}}, every_steps=4).attach(trainer)
    with pytest.raises(ConfigError, match="longer than the model's context of 64"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_a_second_train_call_is_a_new_series(trainer_for, tmp_path):
    make, data = trainer_for
    trainer = make(max_steps=8)
    callback = MemauditCallback(datasets=data, probes=["memorization"], params={"memorization": {"k": 8, "m": 8}},
                                every_steps=4).attach(trainer)
    trainer.train()
    with pytest.warns(UserWarning, match="train\\(\\) began again at step 0.*'training-run2'"):
        trainer.train()
    first = json.loads((tmp_path / "out" / "memaudit-report.json").read_text())["series"][0]
    second = json.loads((tmp_path / "out" / "memaudit-report-run2.json").read_text())["series"][0]
    assert (first["name"], second["name"]) == ("training", "training-run2")
    assert [c["step"] for c in first["checkpoints"]] == [c["step"] for c in second["checkpoints"]] == [4, 8]
    assert callback.report.series[0].name == "training-run2" and callback.runs == 2


DDP_SCRIPT = '''
import sys, torch
sys.path.insert(0, {tests!r})
from conftest import tiny_model, CORPUS
from memaudit.lab.tokenizer import train_bpe
from memaudit.integrations import MemauditCallback
from transformers import Trainer, TrainingArguments, default_data_collator
text = CORPUS.read_text()
tok = train_bpe([text], vocab_size=400)
ids = torch.tensor(tok(text[:20000], add_special_tokens=False)["input_ids"][:16 * 32]).view(16, 32)
args = TrainingArguments(output_dir=sys.argv[1], max_steps=12, per_device_train_batch_size=2, learning_rate=5e-3,
                         logging_steps=4, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True)
trainer = Trainer(model=tiny_model("gpt_neox", len(tok), seed=0, context=64), args=args, processing_class=tok,
                  train_dataset=[{{"input_ids": s, "labels": s}} for s in ids], data_collator=default_data_collator)
callback = MemauditCallback(datasets={{"train": {{"data": ids.tolist(), "seq_len": 32}}}}, probes=["memorization"],
                            checks=[{{"metric": "memorization.loss", "max": 0.1}}], every_steps=4,
                            on_fail="stop").attach(trainer)
trainer.train()
from pathlib import Path
Path(sys.argv[1], f"rank{{args.process_index}}.txt").write_text(  # one file each: stdout lines interleave
    f"RANK {{args.process_index}} of {{args.world_size}} stopped at {{trainer.state.global_step}} after "
    f"{{len(callback.audit_seconds)}} audits")
torch.distributed.barrier()
torch.distributed.destroy_process_group()  # a clean shutdown: gloo can abort at exit otherwise
'''


def test_with_two_processes_process_zero_audits_and_both_stop(tmp_path):
    """torchrun, two CPU processes (gloo): only process zero audits; the stop reaches the other."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "train.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent)))
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script), str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "out" / "rank0.txt").read_text() == "RANK 0 of 2 stopped at 4 after 1 audits"
    assert (tmp_path / "out" / "rank1.txt").read_text() == "RANK 1 of 2 stopped at 4 after 0 audits"
