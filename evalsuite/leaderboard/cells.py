"""Rows -> cells: one primary-metric number per checkpoint x precision x task x shots.

The content hashes here (of a row, of a set of rows) are what every leaderboard file names as
its source, so a reviewer can tell which results a committed table shows.

The chance-normalised score is (v - chance) / (1 - chance) (as in nanochat's CORE metric): 0 is a
random guesser, 1 a perfect score. It is left empty for metrics where lower is better or where the
task declares no chance level.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable

from ..records import ResultRow

__all__ = ["ScoreCell", "primary_cells", "normalise_score", "rows_digest", "digest_of", "finite",
           "int_or_none", "none_last", "precision_rank", "cell_sort_key", "coerce_rows"]

#: Display order of known precisions (widest first); others follow alphabetically.
_PRECISION_ORDER = ("fp32", "float32", "tf32", "bf16", "bfloat16", "fp16", "float16", "fp8",
                    "int8", "nf4", "int4", "fp4", "int3", "int2")


# ---- rows -> cells --------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoreCell:
    """One primary-metric number: checkpoint x precision x task x shots (one ResultRow).

    ``score`` is the chance-normalised value, ``score_stderr`` its standard error (stderr
    scaled by the same factor); both None where normalising does not apply.
    """

    task: str
    series: str
    size: str
    step: int | None
    precision: str
    num_fewshot: int | None
    metric: str
    value: float | None
    stderr: float | None
    score: float | None
    score_stderr: float | None
    chance: float | None
    higher_is_better: bool
    n_params: int | None
    tokens_seen: int | None
    compute_flops: float | None
    model_bits: float | None
    n_samples: int | None
    limit: int | None
    digest: str  # content hash of the row behind this cell

    @property
    def key(self) -> tuple:
        """The cell's identity (what a diff matches on)."""
        return (self.task, self.series, self.size, self.step, self.precision, self.num_fewshot)

    @property
    def plot_value(self) -> float | None:
        """The normalised score where defined, else the raw value."""
        return self.score if self.score is not None else self.value


def finite(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def int_or_none(v: Any) -> int | None:
    f = finite(v)
    return None if f is None else int(round(f))


_ROW_FIELDS = tuple(f.name for f in dataclasses.fields(ResultRow))


def _row_dict(row: ResultRow) -> dict[str, Any]:
    """``row.to_dict()`` without dataclasses.asdict's deep copies (ten times faster; the same
    dict for ResultRow's flat fields; every non-finite float becomes None)."""
    d = {k: getattr(row, k) for k in _ROW_FIELDS}
    d["versions"] = dict(row.versions or {})
    for k, v in d.items():
        if isinstance(v, float) and not math.isfinite(v):
            d[k] = None  # as to_dict does for its float fields (JSON has no NaN)
    return d


def _row_json(row: ResultRow) -> str:
    """Canonical JSON of a row (sorted keys, compact): what its content hash is taken over."""
    return json.dumps(_row_dict(row), sort_keys=True, allow_nan=False, default=str,
                      separators=(",", ":"))


def rows_digest(rows: Iterable[ResultRow]) -> str:
    """Order-independent content hash of rows: sha256 over their sorted canonical JSON lines."""
    h = hashlib.sha256()
    for line in sorted(_row_json(r) for r in rows):
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def digest_of(digests: Iterable[str]) -> str:
    h = hashlib.sha256()
    for d in sorted(digests):
        h.update(d.encode("ascii"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def normalise_score(value: float | None, chance: float | None,
                    higher_is_better: bool = True) -> float | None:
    """(value - chance) / (1 - chance), None where it does not apply."""
    if value is None or chance is None or not higher_is_better or not chance < 1.0:
        return None
    return (value - chance) / (1.0 - chance)


def precision_rank(p: str) -> tuple:
    p_low = p.lower()
    if p_low in _PRECISION_ORDER:
        return (0, _PRECISION_ORDER.index(p_low), p)
    return (1, 0, p)


def none_last(v: Any) -> tuple:
    return (1, 0) if v is None else (0, v)


def cell_sort_key(c: ScoreCell) -> tuple:
    return (c.task, c.series, none_last(c.n_params), c.size, none_last(c.step),
            precision_rank(c.precision), none_last(c.num_fewshot))


def coerce_rows(rows: Any) -> list[ResultRow]:
    """ResultRows from a list of rows or a DataFrame with the ResultRow columns."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        out = []
        for rec in rows.to_dict(orient="records"):
            clean = {}
            for k, v in rec.items():
                if isinstance(v, float) and not math.isfinite(v):
                    v = None
                elif hasattr(v, "item") and not isinstance(v, (str, bytes)):
                    v = v.item()
                clean[k] = v
            for k in ("step", "n_params", "n_params_nonembedding", "tokens_seen", "n_samples",
                      "num_fewshot", "limit"):
                if clean.get(k) is not None:
                    clean[k] = int_or_none(clean[k])
            if clean.get("versions") is None:
                clean["versions"] = {}
            out.append(ResultRow.from_dict(clean))
        return out
    return list(rows)


def primary_cells(rows: Iterable[ResultRow]) -> tuple[list[ScoreCell], int]:
    """Cells from the primary-metric rows, sorted; returns (cells, rows superseded).

    Several rows for one cell (a re-run) keep the full-data run (no ``limit``) over a limited
    one, then the latest timestamp, then the larger canonical JSON (so the choice never depends
    on row order).
    """
    best: dict[tuple, tuple[tuple, ResultRow, str]] = {}
    n_primary = 0
    for row in rows:
        if not row.is_primary:
            continue
        n_primary += 1
        key = (row.task, row.series, row.size, int_or_none(row.step), row.precision,
               int_or_none(row.num_fewshot))
        text = _row_json(row)
        rank = (row.limit is None, row.timestamp or "", text)
        if key not in best or rank > best[key][0]:
            best[key] = (rank, row, text)
    cells = []
    for key, (_, row, text) in best.items():
        value, stderr, chance = finite(row.value), finite(row.stderr), finite(row.chance)
        score = normalise_score(value, chance, bool(row.higher_is_better))
        score_se = None
        if score is not None and stderr is not None:
            score_se = stderr / (1.0 - chance)
        cells.append(ScoreCell(
            task=str(row.task), series=str(row.series), size=str(row.size), step=key[3],
            precision=str(row.precision), num_fewshot=key[5], metric=str(row.metric),
            value=value, stderr=stderr, score=score, score_stderr=score_se, chance=chance,
            higher_is_better=bool(row.higher_is_better), n_params=int_or_none(row.n_params),
            tokens_seen=int_or_none(row.tokens_seen), compute_flops=finite(row.compute_flops),
            model_bits=finite(row.model_bits), n_samples=int_or_none(row.n_samples),
            limit=int_or_none(row.limit),
            digest=hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]))
    cells.sort(key=cell_sort_key)
    return cells, n_primary - len(cells)
