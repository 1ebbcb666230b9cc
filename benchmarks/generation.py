"""The generation probe's decoding against transformers' `generate` on the same batch, and what scoring costs.

    python benchmarks/generation.py                 # on a GPU: Pythia shapes 160m-1.4b, bf16, batches of 64
    python benchmarks/generation.py --tiny          # seconds on a CPU (the test suite runs this)
    python benchmarks/generation.py --sizes 14m 70m --batch 16   # the 2-core CPU figure

For each Pythia shape it builds a random-weight GPT-NeoX model, draws `--batch` prompts of `--prefix` tokens and
continues each by `--new` tokens (no end-of-text stop, so both run every step), back to back, `--repeats` times each
(the median kept):

- generate: `model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=new)` (and `do_sample=True,
  top_k=40` for sampling), as a user would call it;
- memaudit: memaudit.engine.generate.continue_prompts on the same prompts (greedy, and the scheme `top_k: 40`).

It prints tokens/s of each and the ratio memaudit / generate (time; below 1 is faster), checks that greedy gives the
same tokens, and times the scores of the continuations (ROUGE-L twice, BLEU, exact match, edit similarity: the
generation probe's rows) per 1,000 continuations. Every figure comes from one run on one device. It writes
`--out`.json and a Markdown table `--out`.md (device, torch, transformers, date), which docs/generation.md shows
(tests/test_benchmarks.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from results_file import about_run, measured, write_results

ROOT = Path(__file__).resolve().parent.parent
SHAPES = {"tiny": (64, 2, 4), "14m": (128, 6, 4), "70m": (512, 6, 8), "160m": (768, 12, 12), "410m": (1024, 24, 16),
          "1.4b": (2048, 24, 16)}  # width, layers, heads (Pythia's)


def build(size: str, vocab: int, device: str, dtype):
    """A random-weight GPT-NeoX of a Pythia shape."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    width, layers, heads = SHAPES[size]
    config = GPTNeoXConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=4 * width, max_position_embeddings=2048)
    torch.manual_seed(0)
    return GPTNeoXForCausalLM(config).to(device=device, dtype=dtype).eval()


def timed(fn, device: str, repeats: int):
    """The median seconds of `repeats` calls (after one warm-up), and the last result."""
    import torch

    fn()
    seconds, out = [], None
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t)
    return statistics.median(seconds), out


def measure(size: str, args, device: str, dtype) -> dict:
    """generate against memaudit's loop, greedy and sampled, on one model and one batch."""
    import torch

    from memaudit.engine.generate import continue_prompts, row_keys
    from memaudit.engine.sampling import SamplingScheme

    model = build(size, args.vocab, device, dtype)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(1, args.vocab, size=args.prefix) for _ in range(args.batch)]
    ids = torch.tensor(np.stack(prompts), device=device)
    mask = torch.ones_like(ids)
    budgets = np.full(args.batch, args.new)
    keys = row_keys(np.arange(args.batch), 0)
    common = {"attention_mask": mask, "max_new_tokens": args.new, "min_new_tokens": args.new, "pad_token_id": 0,
              "eos_token_id": None}
    with torch.inference_mode():
        theirs_s, theirs = timed(lambda: model.generate(ids, do_sample=False, **common), device, args.repeats)
        mine_s, mine = timed(lambda: continue_prompts(model, prompts, budgets, None, 0, args.batch), device,
                             args.repeats)
        sampled_s, _ = timed(lambda: model.generate(ids, do_sample=True, top_k=40, **common), device, args.repeats)
        scheme = SamplingScheme(top_k=40)
        mine_sampled_s, _ = timed(lambda: continue_prompts(model, prompts, budgets, None, 0, args.batch, scheme, keys),
                                  device, args.repeats)
    same = int((theirs[:, args.prefix:].cpu().numpy() == mine).all(axis=1).sum())
    tokens = args.batch * args.new
    return {"size": size, "batch": args.batch, "prefix": args.prefix, "new": args.new,
            "generate_greedy_s": theirs_s, "memaudit_greedy_s": mine_s, "ratio_greedy": mine_s / theirs_s,
            "generate_sampled_s": sampled_s, "memaudit_sampled_s": mine_sampled_s,
            "ratio_sampled": mine_sampled_s / sampled_s, "tokens_per_s_generate": tokens / theirs_s,
            "tokens_per_s_memaudit": tokens / mine_s, "greedy_rows_identical": same}


def scoring_seconds(n: int, length: int) -> float:
    """Seconds the generation probe's scores take per 1,000 continuations of `length` words against references."""
    sys.path.insert(0, str(ROOT))  # the checkout's probes (installed, they are memaudit.probes)
    from probes.generation import APPROX_BLEU, common_prefix, edit_similarity, text_scores

    rng = np.random.default_rng(1)
    words = np.array(["the", "a", "of", "lobster", "sea", "book", "river", "stone", "light", "night", "house", "water"])
    made = [" ".join(rng.choice(words, length)) for _ in range(n)]
    reference = [" ".join(rng.choice(words, length)) for _ in range(n)]
    tokens = rng.integers(0, 50, size=(n, length))
    text_scores(made[:2], reference[:2])  # the scorers load once per process (nltk's stemmer, sacrebleu's tokenizer)
    t = time.perf_counter()
    scores = text_scores(made, reference)
    _ = scores["bleu"] > APPROX_BLEU, common_prefix(tokens, tokens[::-1]), edit_similarity(tokens, tokens[::-1])
    return (time.perf_counter() - t) / n * 1000


def markdown(rows: list[dict], about: dict) -> str:
    """The results as docs/generation.md shows them."""
    scores = ("Scores not timed." if about["scoring_s_per_1000"] is None else
              f"Scores: {about['scoring_s_per_1000']:.2f} s per 1,000 continuations of {about['scoring_words']} words "
              "(on the CPU, whatever the device).")
    lines = [f"{measured(about)} (`python benchmarks/generation.py {about['arguments']}`). {scores}", "",
             "| shape | batch | prefix | new tokens | generate tokens/s | memaudit tokens/s | x generate, greedy "
             "| x generate, sampled (top-k 40) | greedy rows identical |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['batch']} | {r['prefix']} | {r['new']} | {r['tokens_per_s_generate']:,.0f} | "
                     f"{r['tokens_per_s_memaudit']:,.0f} | {r['ratio_greedy']:.2f} | {r['ratio_sampled']:.2f} | "
                     f"{r['greedy_rows_identical']} of {r['batch']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model, a batch of 4: seconds on a CPU")
    parser.add_argument("--sizes", nargs="+", default=["160m", "410m", "1.4b"], choices=list(SHAPES))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--prefix", type=int, default=32)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-scores", action="store_true", help="skip timing the scores (rouge_score, sacrebleu "
                        "not installed, as on a bare GPU image)")
    parser.add_argument("--out", default=None, help="results file stem (default benchmarks/results/generation-<device>)")
    args = parser.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if args.tiny:
        args.sizes, args.batch, args.prefix, args.new, args.vocab, args.repeats = ["tiny"], 4, 8, 8, 512, 1
    rows = []
    for size in args.sizes:
        rows.append(measure(size, args, device, dtype))
        print(json.dumps(rows[-1]), flush=True)
    words = 8 if args.tiny else 100
    about = about_run(device, str(dtype).removeprefix("torch."), scoring_words=words,
                      scoring_s_per_1000=None if args.no_scores else scoring_seconds(50 if args.tiny else 1000, words))
    table = markdown(rows, about)
    print(table)
    write_results(args.out, "generation", device, about, rows, table)


if __name__ == "__main__":
    main()
