"""The k-bit frontier: the best score reachable within each budget of model bits."""

from __future__ import annotations

import math
from typing import Any

from ..records import final_step_mask

__all__ = ["precision_frontier"]


def precision_frontier(rows, *, all_steps: bool = False) -> list[dict[str, Any]]:
    """The k-bit frontier: per task, the best primary score reachable within each budget of total
    model bits, across sizes and precisions (Dettmers and Zettlemoyer 2023, figure 1).

    Each record is a point where the frontier improves: with ``model_bits`` bits or more, the best
    score is ``value`` (from ``checkpoint_id``), until the next record. Only the latest step of
    each series x size enters unless ``all_steps``.
    """
    if not len(rows):
        return []
    prim = rows[rows["is_primary"].astype(bool)].copy()
    prim = prim[prim["model_bits"].notna() & prim["value"].notna()]
    if not len(prim):
        return []
    if not all_steps:
        prim = prim[final_step_mask(prim)]
    prim = prim.drop_duplicates(subset=["checkpoint_id", "task", "metric", "num_fewshot",
                                        "limit"], keep="last")
    out = []
    for (task, metric), g in prim.groupby(["task", "metric"], sort=True):
        hib = bool(g["higher_is_better"].iloc[0])
        g = g.assign(_v=g["value"].astype(float) * (1 if hib else -1))
        g = g.sort_values(["model_bits", "_v"], ascending=[True, False], kind="stable")
        best = -math.inf
        for r in g.to_dict(orient="records"):
            if r["_v"] > best:
                best = r["_v"]
                out.append({"task": task, "metric": metric, "model_bits": float(r["model_bits"]),
                            "value": float(r["value"]), "checkpoint_id": r["checkpoint_id"],
                            "size": r["size"], "step": r["step"], "precision": r["precision"],
                            "bits_per_param": r.get("bits_per_param"),
                            "n_params": r.get("n_params")})
    return out
