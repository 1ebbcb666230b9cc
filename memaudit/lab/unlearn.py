"""Unlearning in the lab: the losses of gradient ascent and NPO, and the relearning check."""

from __future__ import annotations

from pathlib import Path


def sequence_logprob(model, batch):
    """Log-probability of each sample's tokens after the first: (batch,)."""
    import torch

    logits = model(input_ids=batch).logits[:, :-1].float()  # (batch, seq - 1, vocab)
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, batch[:, 1:].unsqueeze(-1)).squeeze(-1)  # (batch, seq - 1)
    return logprobs.sum(dim=1)


def unlearning_loss(model, batch, spec, reference=None):
    """The loss an unlearning update minimises on the forget batch (batch, seq): gradient ascent, the negated
    language-model loss; NPO (Zhang et al. 2024), -2/beta * mean log sigmoid(-beta * (log p - log p_ref)),
    which is bounded as the model moves away from `reference` (the model at the start of unlearning)."""
    import torch.nn.functional as F

    if spec.method == "gradient_ascent":
        return -model(input_ids=batch, labels=batch).loss
    import torch

    with torch.no_grad():
        ref = sequence_logprob(reference, batch)  # (batch,)
    return -(2 / spec.beta) * F.logsigmoid(-spec.beta * (sequence_logprob(model, batch) - ref)).mean()


def npo_reference(model_class, folder: Path, updates):
    """NPO's reference: the checkpoint saved right before the first unlearning update, frozen."""
    start = min(u.step for u in updates if u.kind == "unlearn") - 1
    reference = model_class.from_pretrained(Path(folder) / f"step-{start}").eval()
    reference.requires_grad_(False)
    return reference


def relearn(model, tokenizer, forget, spec, default_lr: float, seed: int = 0) -> dict:
    """The relearning check: fine-tune a copy of `model` for `spec.steps` AdamW steps on the first
    `spec.fraction` of the forget samples (`forget`: (samples, seq) token ids) and measure M on the other
    samples before and after, with memaudit's own audit of a model in memory. `model` is left unchanged."""
    import copy

    import torch

    from memaudit.api import audit_model

    n = len(forget)
    n_fit = max(1, min(n - 1, round(spec.fraction * n)))
    fit, rest = forget[:n_fit], forget[n_fit:]  # (n_fit, seq), (n - n_fit, seq)
    data = {"forget_rest": {"data": rest.tolist(), "seq_len": int(forget.shape[1])}}

    def measured(m) -> float:
        return audit_model(m, tokenizer, data, probes=["memorization"]).metric("memorization", "forget_rest", "M")

    student = copy.deepcopy(model)
    before = measured(student)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(student.parameters(), lr=spec.lr or default_lr, weight_decay=0.0)
    student.train()
    for _ in range(spec.steps):
        loss = student(input_ids=fit, labels=fit).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return {"steps": spec.steps, "lr": spec.lr or default_lr, "n_fit": n_fit, "n_measured": n - n_fit,
            "M_before": before, "M_after": measured(student)}
