"""Calibration of the prediction intervals on the Pythia, OPT and BLOOM back-tests.

    python benchmarks/bench_calibration.py [--results DIR] [--seeds 0,1] [--n-boot N]
                                           [--interval bma,form] [--group core] [--json]

Holds out the largest sizes of each series (Pythia standard and deduped at 6.9B/12B and at
1.4B/2.8B, OPT 30B/66B, BLOOM 7.1B), fits the rest (final checkpoints, zero-shot, log-params),
and prints, per interval method and seed, the pooled coverage at 50/80/90/95% with the misses
below/above, the MAE of the law and of the baselines B1 (largest fitted score) and B2 (a line
through the three largest fitted sizes), split by split. Without --results the Pythia evals in
../shared/data/pythia_evals are imported into a temporary folder first (about 40 s).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evalsuite.scaling import ScalingLaw, backtest, calibration_table  # noqa: E402
from evalsuite.scaling.backtest import CORE_TASKS  # noqa: E402

SPLITS = [("pythia", ["6.9b", "12b"]), ("pythia-deduped", ["6.9b", "12b"]),
          ("pythia", ["1.4b", "2.8b"]), ("pythia-deduped", ["1.4b", "2.8b"]),
          ("opt", 2), ("bloom", 1)]


def load(results: str | None) -> pd.DataFrame:
    from evalsuite.importer import import_results
    from evalsuite.store import ResultStore

    if results:
        return ResultStore(results).to_frame()
    src = ROOT.parent / "shared" / "data" / "pythia_evals"
    if not src.exists():
        sys.exit(f"{src} is absent: pass --results DIR with the imported Pythia evals")
    tmp = tempfile.mkdtemp(prefix="evalsuite-cal-")
    store = ResultStore(tmp)
    store.append(import_results(src))   # the folder, as `evalsuite import` reads it
    return store.to_frame()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", help="results folder holding the imported evals")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--n-boot", type=int, default=None, help="default: ScalingLaw's")
    ap.add_argument("--interval", default="bma,form")
    ap.add_argument("--group", default="core", choices=["core", "mmlu"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    frame = load(args.results)
    frame = frame[frame["num_fewshot"] == 0]
    keep = frame["task"].isin(CORE_TASKS) if args.group == "core" else \
        frame["task"].str.startswith(("hendrycksTest-", "mmlu"))
    frame = frame[keep]
    out = []
    for interval in args.interval.split(","):
        for seed in map(int, args.seeds.split(",")):
            kw = {} if args.n_boot is None else {"n_boot": args.n_boot}
            law = ScalingLaw(x="n_params", seed=seed, interval=interval, compare_forms=False,
                             **kw)
            parts = [backtest(frame, series=s, holdout=h, groups=(args.group,), law=law)
                     for s, h in SPLITS]
            res = pd.concat(parts, ignore_index=True)
            pooled = calibration_table(res, by=("group",)).iloc[0].to_dict()
            per = res.groupby(["series", "split"], sort=False).agg(
                mae=("abs_error", "mean"), b1=("abs_error_b1", "mean"),
                b2=("abs_error_b2", "mean")).reset_index()
            out.append({"interval": interval, "seed": seed, "n_boot": law.n_boot, **pooled,
                        "splits": per.round(4).to_dict("records")})
    if args.json:
        print(json.dumps(out, indent=1, default=float))
        return 0
    cols = ["interval", "seed", "n_boot", "n", "mae", "cover_50", "cover_80", "cover_90",
            "cover_95", "miss_90_below_above", "pit_deciles"]
    print(pd.DataFrame(out)[cols].to_string(index=False))
    print()
    print(pd.DataFrame(out[0]["splits"]).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
