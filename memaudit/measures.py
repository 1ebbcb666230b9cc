"""The measures probes share, in one public module: a probe (the standard ones, and yours) imports them from here
rather than from another probe's file. Each is a pure function of numpy arrays (or plain values).

They are part of every probe's fingerprint that names them (memaudit/engine/identity.py): a change here changes
the journal keys of the probes that use them.
"""

from __future__ import annotations

import numpy as np

from memaudit.results.samples import Column



# greedy extraction, from teacher-forced hits ------------------------------------------------------------------


def extractable_samples(hits: np.ndarray, k: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample greedy verdicts (samples,) and matched lengths (samples,) from teacher-forced hits
    (samples, seq_len - 1): the one k-extractability computation, used by `memorization`, `memorized_strings`
    and `extraction`.

    hits[:, j] says whether token j + 1 is the argmax given tokens 0..j. Greedy decoding from the k-token
    prefix reproduces tokens k..k+m-1 exactly when hits[:, k-1 : k+m-1] are all true, and it first diverges
    at the first miss there: one pass gives both verdict and matched length."""
    window = hits[:, k - 1:k + m - 1]  # (samples, m)
    verdict = window.all(axis=1)  # (samples,)
    return verdict, np.where(verdict, m, window.argmin(axis=1)).astype(np.int32)  # leading hits before the first miss


def own_targets(lengths: np.ndarray, positions: int) -> np.ndarray:
    """For rows of whole records (`samples: records`): which of the `positions` product positions are each record's
    own targets (samples, positions) bool; the rest is padding. Record i has lengths[i] - 1 targets."""
    return np.arange(positions)[None, :] < (lengths - 1)[:, None]


def record_split(lengths: np.ndarray, dataset, k: int, m: int) -> tuple[int, np.ndarray]:
    """For rows of whole records (`samples: records`): the row position of each record's first token (1 after a
    prefix token, else 0) and which records (samples,) have a k-token prefix and an m-token suffix (at least k + m
    tokens of their own). Columns at `first` on read like a fixed-length sample's: `extractable_samples(hits[:,
    first:], k, m)` is the verdict of the records that apply."""
    first = 1 if dataset.records.prefix != "none" else 0
    return first, lengths - first >= k + m


DEFAULT_SCHEMES = ({"temperature": 1.0}, {"top_k": 40})
"""The sampling schemes extraction_risk and memorized_strings use unless told: plain sampling and top-k 40."""


def log_pz(sampling_logprobs: np.ndarray, k: int, m: int) -> np.ndarray:
    """log p_z per sample (float64): the sum of the suffix tokens' log-probabilities under one scheme.
    sampling_logprobs: (samples, seq_len - 1), position j predicting token j + 1."""
    return sampling_logprobs[:, k - 1:k + m - 1].astype(np.float64).sum(axis=1)  # (samples,)


# membership: scores and how well they tell members apart ------------------------------------------------------


def membership_rows(logprobs, entropy, logp2, zlib_len, k_percent: float, lengths=None) -> dict[str, np.ndarray]:
    """Per-sample membership scores, higher meaning 'more likely a member': each (samples,). Rows of whole records
    (`lengths`) are scored over their own tokens (see `_record_membership`)."""
    if lengths is not None:
        return _record_membership(logprobs, entropy, logp2, zlib_len, lengths, k_percent)
    n = logprobs.shape[1]
    k = max(1, int(n * k_percent / 100))  # as the reference code (mink-plus-plus, MIMIR): int(), not round()
    mu = -entropy  # E_p[log p] of each next-token distribution
    sigma = np.sqrt(np.maximum(logp2 - mu ** 2, 1e-12))
    z = (logprobs - mu) / sigma  # (samples, seq - 1): Min-K%++ token scores
    loss = logprobs.mean(axis=1)
    return {
        "loss": loss,
        # Carlini et al. 2021's zlib ratio as MIMIR computes it: mean log-likelihood per byte of zlib output
        "zlib": loss / zlib_len,
        "min_k": np.ascontiguousarray(np.sort(logprobs, axis=1)[:, :k]).mean(axis=1),
        "min_k_pp": np.ascontiguousarray(np.sort(z, axis=1)[:, :k]).mean(axis=1),
    }


def _record_membership(logprobs, entropy, logp2, zlib_len, lengths, k_percent: float) -> dict[str, np.ndarray]:
    """`membership_rows` on rows of varied length: each record's mean log-likelihood over its own targets, and its
    Min-K% and Min-K%++ over the lowest int(n * k%) (at least 1) of its own n targets, as the reference code
    computes them on that record alone."""
    n = lengths - 1  # (samples,) targets per record
    valid = own_targets(lengths, logprobs.shape[1])  # (samples, positions)
    k = np.maximum(1, (n * k_percent / 100).astype(np.int64))  # (samples,): int(), as the reference code
    lowest = np.arange(logprobs.shape[1])[None, :] < k[:, None]  # (samples, positions): the k lowest, once sorted

    def mean_of_lowest(x):
        ordered = np.sort(np.where(valid, x, np.inf), axis=1)  # padding sorts last and is never among the k lowest
        return np.where(lowest, ordered, 0).astype(np.float64).sum(axis=1) / k

    mu = -entropy
    sigma = np.sqrt(np.maximum(logp2 - mu ** 2, 1e-12))
    loss = np.where(valid, logprobs, 0).astype(np.float64).sum(axis=1) / n
    return {"loss": loss, "zlib": loss / zlib_len, "min_k": mean_of_lowest(logprobs),
            "min_k_pp": mean_of_lowest((logprobs - mu) / sigma)}


SCORE_COLUMNS = {score: Column("float64", meaning, unit="nats" if score != "zlib" else "nats per zlib byte",
                               higher="more member-like", name=f"{score}_score")
                 for score, meaning in {
                     "loss": "mean log-likelihood of the sample's tokens (= -loss)",
                     "zlib": "mean log-likelihood over zlib-compressed length (Carlini et al. 2021)",
                     "min_k": "mean of the lowest k% token log-likelihoods (Min-K%)",
                     "min_k_pp": "Min-K%++ score (Zhang et al. 2024)"}.items()}
"""The per-sample columns of `membership_rows` (--samples-out: `<probe>_<score>_score`)."""


def roc_auc(members: np.ndarray, non_members: np.ndarray) -> float:
    """P(score of a member > score of a non-member), ties counting half (Mann-Whitney U), from average ranks
    (vectorised: np.unique groups the ties)."""
    scores = np.concatenate([members, non_members])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last of each group of equal scores
    ranks = ((ends - counts + 1 + ends) / 2)[inverse]  # average rank of each score
    n1, n0 = len(members), len(non_members)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def tpr_at_fpr(members: np.ndarray, non_members: np.ndarray, fpr: float = 0.01) -> float:
    """Share of members scoring above the threshold that lets through `fpr` of the non-members."""
    threshold = np.quantile(non_members, 1 - fpr, method="higher")
    return float((members > threshold).mean())


# over a series -------------------------------------------------------------------------------------------------


def crossing_step(steps: list, values: list, tau: float) -> float | None:
    """The step at which `values` (at `steps`, in order) first reach `tau`, interpolated linearly between the
    last point below and the first at or above it; the first step when it starts at or above; None: never."""
    points = [(s, v) for s, v in zip(steps, values) if s is not None and v is not None]
    for i, (step, value) in enumerate(points):
        if value >= tau:
            if i == 0:
                return float(step)
            (s0, v0) = points[i - 1]
            return float(s0 + (tau - v0) / (value - v0) * (step - s0))
    return None
