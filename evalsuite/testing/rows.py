"""Synthetic result rows for leaderboard tests and benchmarks (no model, no runner).

Scores follow a logistic curve in log10(compute) between the task's chance level and a ceiling,
with binomial-sized noise from a seeded generator, so the same arguments give the same rows.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

from ..records import ResultRow, compute_flops

__all__ = ["synthetic_rows"]


def synthetic_rows(*, series: Sequence[str] = ("ladder",),
                   sizes: Sequence[tuple[str, int]] = (("1m", 1_000_000), ("3m", 3_000_000),
                                                       ("10m", 10_000_000), ("30m", 30_000_000),
                                                       ("100m", 100_000_000)),
                   steps: Sequence[int | None] = (1000, 2000, 4000),
                   tasks: Sequence[str] = ("arc_easy", "piqa"),
                   precisions: Sequence[str] = ("fp32",), tokens_per_step: int = 1_000_000,
                   chance: float = 0.25, n_samples: int = 1000, model_bits: bool = False,
                   midpoint_flops: float = 1e16, seed: int = 0) -> list[ResultRow]:
    """One primary row (``acc``) and one secondary row (``acc_norm``) per cell.

    Task i rises around ``midpoint_flops`` * 10^(0.3 i); every third task rises sharply (an
    emergent-looking curve), the others gradually.
    """
    rng = random.Random(seed)
    bits = {"fp32": 32, "bf16": 16, "fp16": 16, "int8": 8, "int4": 4}
    rows = []
    for s_i, s in enumerate(series):
        for size, n_params in sizes:
            for step in steps:
                # step None: a released model without steps, tokens unknown (never guessed)
                tokens = None if step is None else step * tokens_per_step
                flops = compute_flops(n_params, tokens)
                log_c = math.log10(flops) if flops else math.log10(midpoint_flops) + 1.0
                for t_i, task in enumerate(tasks):
                    mid = math.log10(midpoint_flops) + 0.3 * t_i + 0.2 * s_i
                    slope = 6.0 if t_i % 3 == 2 else 2.0
                    for precision in precisions:
                        penalty = {"int8": 0.01, "int4": 0.06}.get(precision, 0.0)
                        p = chance + (0.9 - chance) / (1 + math.exp(-slope * (log_c - mid)))
                        p = min(max(p - penalty + rng.gauss(0, 0.005), 0.0), 1.0)
                        se = math.sqrt(max(p * (1 - p), 1e-4) / n_samples)
                        ck = f"{s}-{size}@{'final' if step is None else step}:{precision}"
                        for metric, primary, v in (("acc", True, p), ("acc_norm", False, p * 0.98)):
                            rows.append(ResultRow(
                                checkpoint_id=ck, series=s, size=size, step=step,
                                n_params=n_params, n_params_nonembedding=n_params // 2,
                                tokens_seen=tokens, compute_flops=flops, weight_hash=None,
                                precision=precision, task=task, task_version="1", metric=metric,
                                is_primary=primary, value=round(v, 6), stderr=round(se, 6),
                                n_samples=n_samples, num_fewshot=0, chance=chance,
                                model_bits=(float(n_params * bits.get(precision, 16))
                                            if model_bits else None),
                                cell_key=f"{ck}/{task}", config_hash="0" * 16,
                                versions={"evalsuite": "0.1.0"},
                                timestamp=f"2026-01-01T00:00:{rng.randrange(60):02d}Z"))
    return rows
