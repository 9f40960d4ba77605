"""Leaderboard plots: score against training compute per task, with fitted curves and predictions.

Drawn on a bare ``matplotlib.figure.Figure`` (no pyplot state) under matplotlib's default
rcParams, whatever the user's matplotlibrc says, and saved as PNG with fixed metadata, so the
same points give the same bytes on the same matplotlib version.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["Curve", "PredictedPoint", "PlotSpec", "render_plot_png", "x_axis"]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_LINESTYLES = ("-", "--", ":", "-.")
_MAX_LEGEND = 14


@dataclass(frozen=True)
class Curve:
    """A fitted curve: the mean over ``x`` (compute, FLOPs) and its interval, for one series."""

    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    lower: tuple[float, ...] | None = None
    upper: tuple[float, ...] | None = None


@dataclass(frozen=True)
class PredictedPoint:
    """A predicted score (not a measurement) at a compute the results do not cover."""

    label: str
    x: float
    y: float
    lower: float | None = None
    upper: float | None = None


@dataclass(frozen=True)
class Line:
    label: str
    series: str
    size_rank: float  # 0..1 within the series, for the colour
    precision_rank: int
    x: tuple[float, ...]
    y: tuple[float, ...]
    err: tuple[float, ...]


@dataclass(frozen=True)
class PlotSpec:
    task: str
    y_label: str
    lines: tuple[Line, ...]
    curves: tuple[Curve, ...]
    predicted: tuple[PredictedPoint, ...]
    n_without_compute: int
    x_label: str = "training compute (FLOPs, 6·N·D, N = total parameters)"

    @classmethod
    def from_cells(cls, task: str, cells: Sequence[Any], curves: Sequence[Curve] = (),
                   predicted: Sequence[PredictedPoint] = (),
                   flops_basis: str = "total") -> "PlotSpec":
        """One line per series x size x precision (x shots when several), sorted by compute.

        Where no cell of the task has compute (tokens seen unknown), the axis falls back to
        training steps (one line per size), or, with one step per size, to parameters (one line
        per series), and the label says so and names the fix.
        """
        x_name, x_label = x_axis(cells, flops_basis)
        groups: dict[tuple, list] = {}
        missing = 0
        for c in cells:
            x = getattr(c, x_name)
            if x is None or x <= 0 or c.plot_value is None:
                missing += 1
                continue
            size = "" if x_name == "n_params" else c.size
            groups.setdefault((c.series, size, c.precision, c.num_fewshot), []).append(c)
        precisions = sorted({k[2] for k in groups})
        shots = {k[3] for k in groups}
        sizes_by_series: dict[str, list] = {}
        for (series, size, _, _), cs in groups.items():
            n = cs[0].n_params
            entry = (math.inf if n is None else n, size)
            if entry not in sizes_by_series.setdefault(series, []):
                sizes_by_series[series].append(entry)
        for v in sizes_by_series.values():
            v.sort()
        lines = []
        for key in sorted(groups, key=lambda k: (k[0], sizes_by_series[k[0]].index(
                (math.inf if groups[k][0].n_params is None else groups[k][0].n_params, k[1])),
                k[2], -1 if k[3] is None else k[3])):
            series, size, precision, nshot = key
            cs = sorted(groups[key], key=lambda c: (getattr(c, x_name), -1 if c.step is None
                                                    else c.step))
            ranks = sizes_by_series[series]
            n = cs[0].n_params
            pos = ranks.index((math.inf if n is None else n, size))
            # with no size in the key (a parameters axis) the line is the whole series
            label = f"{_short(series, 18)} {_short(size, 10)}".rstrip()
            if len(precisions) > 1:
                label += f" {precision}"
            if len(shots) > 1:
                label += f" {'?' if nshot is None else nshot}-shot"
            err = tuple((c.score_stderr if c.score is not None else c.stderr) or 0.0 for c in cs)
            lines.append(Line(label=label, series=series,
                              size_rank=pos / max(1, len(ranks) - 1),
                              precision_rank=precisions.index(precision),
                              x=tuple(float(getattr(c, x_name)) for c in cs),
                              y=tuple(c.plot_value for c in cs), err=err))
        normalised = any(c.score is not None for c in cells)
        metrics = sorted({c.metric for c in cells})
        y_label = ("chance-normalised " if normalised else "") + "/".join(metrics)
        return cls(task=task, y_label=y_label, lines=tuple(lines), curves=tuple(curves),
                   predicted=tuple(predicted), n_without_compute=missing, x_label=x_label)


_NO_COMPUTE = ("no compute: tokens seen unknown; `evalsuite series PATH --tokens-per-step N "
               "--annotate` adds it")


def x_axis(cells: Sequence[Any], flops_basis: str) -> tuple[str, str]:
    """The x attribute and axis label: compute where any cell has it, else steps (several per
    size), else parameters."""
    if any(c.compute_flops for c in cells):
        return "compute_flops", f"training compute (FLOPs, 6·N·D, N = {flops_basis} parameters)"
    steps: dict[tuple, set] = {}
    for c in cells:
        if c.step:
            steps.setdefault((c.series, c.size), set()).add(c.step)
    if any(len(s) > 1 for s in steps.values()):
        return "step", f"training step ({_NO_COMPUTE})"
    return "n_params", f"parameters ({_NO_COMPUTE})"


def _short(name: str, limit: int = 30) -> str:
    name = " ".join(str(name).split())
    return name if len(name) <= limit else name[:limit - 3] + "..."


def _text(name: str, limit: int = 30) -> str:
    """A user's name as plot text: shortened, and drawn as typed, never as mathtext ("$")."""
    return _short(name, limit).replace("$", r"\$")


def _rc() -> dict:
    import matplotlib

    rc = {k: v for k, v in matplotlib.rcParamsDefault.items() if k != "backend"}
    rc.update({"svg.hashsalt": "evalsuite", "path.simplify": True, "font.size": 9.0})
    return rc


def render_plot_png(spec: PlotSpec, *, version: str, provenance: str, dpi: int = 90) -> bytes:
    """The plot as PNG bytes with fixed metadata (no dates; software and provenance only)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    with matplotlib.rc_context(rc=_rc()):
        fig = Figure(figsize=(9.0, 4.8))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        series_names = sorted({ln.series for ln in spec.lines})
        cmaps = ("viridis", "plasma", "cividis", "magma")
        segments, seg_colors = [], []
        for i, ln in enumerate(spec.lines):
            si = series_names.index(ln.series)
            cmap = matplotlib.colormaps[cmaps[si % len(cmaps)]]
            color = cmap(0.05 + 0.8 * ln.size_rank)
            ax.plot(ln.x, ln.y, color=color, marker=_MARKERS[si % len(_MARKERS)], markersize=3.5,
                    linewidth=1.0, linestyle=_LINESTYLES[ln.precision_rank % len(_LINESTYLES)],
                    label=_text(ln.label, 40) if i < _MAX_LEGEND else None)
            for x, y, e in zip(ln.x, ln.y, ln.err):
                if e:
                    segments.append(((x, y - e), (x, y + e)))
                    seg_colors.append(color)
        if segments:  # all error bars in one collection: far faster to draw than errorbar()
            ax.add_collection(LineCollection(segments, colors=seg_colors, linewidths=0.6))
        for i, cv in enumerate(spec.curves):
            ax.plot(cv.x, cv.y, color="0.25", linestyle="--", linewidth=1.2,
                    label=_text(f"fit: {cv.label}") if i < 4 else None)
            if cv.lower is not None and cv.upper is not None:
                ax.fill_between(cv.x, cv.lower, cv.upper, color="0.5", alpha=0.15, linewidth=0)
        for i, p in enumerate(spec.predicted):
            lo = p.y - p.lower if p.lower is not None else 0.0
            hi = p.upper - p.y if p.upper is not None else 0.0
            ax.errorbar([p.x], [p.y], yerr=[[max(lo, 0.0)], [max(hi, 0.0)]], color="crimson",
                        marker="o", markerfacecolor="none", markersize=7, linestyle="none",
                        capsize=3, label="predicted (not measured)" if i == 0 else None)
        if spec.lines or spec.curves or spec.predicted:
            ax.set_xscale("log")
        else:
            ax.text(0.5, 0.5, "no rows with compute_flops for this task", ha="center",
                    va="center", transform=ax.transAxes)
        ax.set_xlabel(spec.x_label)
        ax.set_ylabel(_text(spec.y_label, 60))
        ax.set_title(_text(spec.task, 90), fontsize=10)
        ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
        extra = []
        if len(spec.lines) > _MAX_LEGEND:
            extra.append(f"{len(spec.lines) - _MAX_LEGEND} more lines not in the legend")
        if spec.n_without_compute:
            extra.append(f"{spec.n_without_compute} cells without compute not shown")
        if extra:
            ax.text(0.01, 0.01, "; ".join(extra), transform=ax.transAxes, fontsize=7,
                    color="0.4")
        if spec.lines or spec.curves or spec.predicted:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        fig.subplots_adjust(left=0.08, right=0.68, top=0.92, bottom=0.11)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi,
                    metadata={"Software": f"evalsuite {version}", "Description": provenance})
    return buf.getvalue()
