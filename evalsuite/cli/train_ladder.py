"""``evalsuite train-ladder``: train the reference ladder (evalsuite.ladder) from scratch."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from ._common import CliError, parse_list


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-ladder", help="train the reference GPT-NeoX ladder on generated arithmetic",
        description="Train every ladder size on the same generated arithmetic token stream "
                    "and save log-spaced checkpoints as <out>/<size>/step<N>/. Deterministic "
                    "from --seed for a fixed --threads. Test questions of the GPT-3 arithmetic "
                    "files under --data-dir are left out of the training data.")
    p.add_argument("--out", default="models/ladder", metavar="DIR",
                   help="output folder (default: models/ladder)")
    p.add_argument("--seed", type=int, default=0, help="data and initialisation seed (default 0)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1; results are bit-identical only for the "
                        "same count)")
    p.add_argument("--sizes", default=None, metavar="LIST",
                   help="comma-separated size labels (default: all)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default 800)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="shared data folder holding benchmarks/gpt3_arithmetic_unscramble "
                        "(default: $EVALSUITE_SHARED_DATA or ../shared/data)")
    p.add_argument("--eval", dest="evaluate", action="store_true",
                   help="afterwards, score every checkpoint on the real arithmetic_2da items "
                        "through lm-eval and write accuracy.json and CARD.md")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.threads < 1:
        raise CliError(f"--threads must be >= 1, got {args.threads}")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from ..ladder import LADDER_SIZES, TrainSettings, size_by_label, train_ladder

    try:
        sizes = [size_by_label(s) for s in parse_list(args.sizes)] or list(LADDER_SIZES)
    except ValueError as e:
        raise CliError(f"--sizes: {e}") from None
    kw = {"seed": args.seed, "threads": args.threads}
    if args.steps is not None:
        if args.steps < 1:
            raise CliError(f"--steps must be >= 1, got {args.steps}")
        kw["steps"] = args.steps
    settings = TrainSettings(**kw)
    data_dir = Path(args.data_dir or os.environ.get("EVALSUITE_SHARED_DATA") or "../shared/data")
    if args.data_dir and not data_dir.is_dir():
        raise CliError(f"--data-dir {data_dir} is not a folder; point it at the shared data "
                       "folder (the one holding benchmarks/) or leave it out")
    if not data_dir.joinpath("benchmarks", "gpt3_arithmetic_unscramble").is_dir():
        print(f"warning: {data_dir}/benchmarks/gpt3_arithmetic_unscramble is absent: the "
              "training data will NOT be decontaminated against the GPT-3 test items",
              file=sys.stderr)
    command = "evalsuite " + " ".join(shlex.quote(a) for a in sys.argv[1:]) \
        if sys.argv and sys.argv[0].endswith("evalsuite") else None
    out = Path(args.out)
    manifest = train_ladder(out, settings=settings, sizes=sizes, data_dir=data_dir,
                            command=command, log=lambda m: print(m, flush=True))
    print(f"trained {len(manifest['sizes'])} sizes in {manifest['train_wall_time_s']:.0f} s "
          f"-> {out}")
    if args.evaluate:
        from ..ladder.card import write_card
        from ..ladder.evaluate import evaluate_ladder

        two_da = data_dir.joinpath("benchmarks", "gpt3_arithmetic_unscramble",
                                   "two_digit_addition.jsonl")
        if not two_da.exists():
            raise CliError(f"--eval needs {two_da}; point --data-dir at the shared data folder")
        evaluate_ladder(out, two_da, log=lambda m: print(m, flush=True))
        write_card(out)
        print(f"wrote {out / 'accuracy.json'} and {out / 'CARD.md'}")
    return 0
