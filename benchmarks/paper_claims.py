"""The paper's claims, measured on the lab's recipes with three seeds each, and a verdict for each.

    python benchmarks/paper_claims.py [--out DIR] [--recipes forgetting-sizes unique-ids ...]

Trains each recipe into DIR/<recipe>/ (skipped when trained already; each takes 1-3 minutes on 2 CPU
cores), audits it with the probes the claims rest on (cached), and prints, per claim, the values over seeds
(mean ± sd), the comparisons between replicate groups with their t statistics, and the verdict
(memaudit/lab/claims.py says how verdicts are decided). The unique-ID comparison is repeated at two more
training-set sizes (`--ids-data-sizes`, small models) to show how the effect scales. Writes DIR/claims.json
and DIR/claims.md too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import memaudit  # noqa: E402
from memaudit.lab.claims import claims_table, judge  # noqa: E402
from memaudit.lab.config import load_lab_config  # noqa: E402
from memaudit.lab.train import run_lab  # noqa: E402

RECIPES = ["forgetting-sizes", "forgetting-epochs", "forgetting-repeats", "forgetting-spacing", "unique-ids", "profiles",
           "perturbation"]
PROBES = "memorization or forgetting or unique_ids or twin or generation"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="paper-claims", help="folder for the trained recipes and the results")
    parser.add_argument("--recipes", nargs="+", default=RECIPES, choices=RECIPES)
    parser.add_argument("--ids-data-sizes", nargs="*", type=int, default=[32, 128],
                        help="also compare ID runs with their baselines at these training-set sizes (small models)")
    args = parser.parse_args()
    out = Path(args.out)
    reports, seconds = {}, {}
    for recipe in args.recipes:
        lab = load_lab_config(recipe)
        t = time.perf_counter()
        folder = run_lab(lab, out=out / recipe)
        seconds[recipe] = round(time.perf_counter() - t, 1)
        report = memaudit.audit(folder / "checkpoints.yaml", select=PROBES)
        (out / f"{recipe}.json").write_text(report.model_dump_json(indent=1))
        reports[recipe] = report
        print(f"{recipe}: trained in {seconds[recipe]} s (0 when trained before), "
              f"{sum(len(s.checkpoints) for s in report.series)} checkpoints audited", file=sys.stderr)
    claims = judge(reports)
    if "unique-ids" in args.recipes:  # the ID comparison at two training-set sizes (small models)
        for n in args.ids_data_sizes:
            lab = load_lab_config("unique-ids")
            lab = lab.model_copy(update={"n_samples": n, "runs": [r for r in lab.runs if r.name.startswith("small")]})
            folder = run_lab(lab, out=out / f"unique-ids-n{n}")
            report = memaudit.audit(folder / "checkpoints.yaml", select=PROBES)
            for claim in judge({"unique-ids": report}):
                claim.claim += f" — {n} training samples"
                claims.append(claim)
    table = claims_table(claims)
    print(table)
    (out / "claims.md").write_text(table + "\n")
    (out / "claims.json").write_text(json.dumps({"train_seconds": seconds, "claims": [asdict(c) for c in claims]},
                                                indent=1))


if __name__ == "__main__":
    main()
