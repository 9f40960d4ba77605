"""`evalsuite demo`: the whole pipeline on the shipped reference ladder, offline, no arguments.

Evaluates every checkpoint of ``models/ladder`` on GPT-3 two-digit addition and subtraction
(all 2000 items of each),
prints the final-step table, classifies emergence and rebuilds the leaderboards. Finished cells
in the results folder are skipped, so a second call takes seconds.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
from pathlib import Path

from ._common import CliError, add_results_arg

REPO_ROOT = Path(__file__).resolve().parents[2]
LADDER = REPO_ROOT / "models" / "ladder"
DEMO_TASKS = ("arithmetic_2da", "arithmetic_2ds")
DEMO_LIMIT = None  # all 2000 items: about 2 minutes on 2 idle cores
_FILES = {"arithmetic_2da": ("two_digit_addition", "plus"),
          "arithmetic_2ds": ("two_digit_subtraction", "minus")}


def register(sub) -> None:
    p = sub.add_parser("demo", help="evaluate the shipped reference ladder and build leaderboards "
                                    "(offline, no arguments)")
    add_results_arg(p)
    p.add_argument("--leaderboards", default="leaderboards", metavar="DIR",
                   help="where to write the leaderboards (default: leaderboards/)")
    p.add_argument("--series", default=str(LADDER), help="checkpoint series (default: models/ladder)")
    p.add_argument("--limit", type=int, default=DEMO_LIMIT,
                   help="items per task (default: all 2000; e.g. --limit 400 for a quicker look)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="benchmark data (default: $EVALSUITE_DATA_DIR, else ../shared/data/benchmarks "
                        "beside the repo, else generated stand-in items)")
    p.add_argument("--engine", default="evalsuite", choices=["hf", "evalsuite"],
                   help="scoring engine (default evalsuite; hf: lm-eval's own model)")
    p.add_argument("--batch-size", default="64", help="rows per forward pass (default 64)")
    p.set_defaults(func=run)


def find_data_dir(explicit: str | None) -> tuple[str, bool]:
    """(data folder, is_real). Falls back to generated items in the GPT-3 file format."""
    for cand in (explicit, os.environ.get("EVALSUITE_DATA_DIR"),
                 str(REPO_ROOT.parent / "shared" / "data" / "benchmarks")):
        if cand and (Path(cand) / "gpt3_arithmetic_unscramble").is_dir():
            return cand, True
    out = Path(tempfile.mkdtemp(prefix="evalsuite-demo-data-")) / "gpt3_arithmetic_unscramble"
    out.mkdir(parents=True)
    rng = random.Random(20240601)
    for fname, op in _FILES.values():
        with open(out / f"{fname}.jsonl", "w") as fh:
            for _ in range(2000):
                a, b = rng.randrange(100), rng.randrange(100)
                value = a + b if op == "plus" else a - b
                fh.write(json.dumps({"context": f"\n\nQ: What is {a} {op} {b}?\n\nA:",
                                     "completion": f" {value}"}) + "\n")
    return str(out.parent), False


def run(args) -> int:
    from types import SimpleNamespace

    from . import main as cli_main
    from .run import execute

    if not Path(args.series, ).exists():
        raise CliError(f"reference ladder {args.series} is missing: it ships in the repo under "
                       "models/ladder (or retrain it with `evalsuite train-ladder`)")
    data_dir, real = find_data_dir(args.data_dir)
    if not real:
        print("note: ../shared/data/benchmarks not found; scoring generated stand-in items in the "
              "GPT-3 format (not the real test set; they may overlap the ladder's training data)",
              file=sys.stderr)
    run_args = SimpleNamespace(
        results=args.results, data_dir=data_dir, include_path=[], limit=args.limit,
        num_fewshot=None, precisions="fp32", device="cpu", batch_size=args.batch_size,
        engine=args.engine, seed=1234, bootstrap_iters=1000, tokens_per_step=None,
        trust_remote_code=False, json=False)
    code = execute(args.series, list(DEMO_TASKS), run_args)
    print()
    cli_main(["results", "--results", args.results])
    print()
    cli_main(["emergence", "--results", args.results, "--series", "ladder"])
    print()
    lb = cli_main(["leaderboard", "--results", args.results, "--out", args.leaderboards])
    print(f"\nleaderboards written to {args.leaderboards}/ (open {args.leaderboards}/index.html)")
    return code or lb
