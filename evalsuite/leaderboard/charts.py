"""Interactive charts of the HTML page: Vega-Lite specifications built from the leaderboard data.

Vega-Lite (rendered in the page by Vega and vega-embed, from the bundle that
``vl-convert-python`` ships: :func:`vega_bundle`, written beside the page as
``assets/vega.js``, so nothing is fetched from the network) was chosen over hand-written SVG and
over Plotly: its specifications are plain JSON that this module writes deterministically (the
same rows give the same bytes), the runtime is a third of Plotly's bundled script, and
``vl-convert`` can render the same specification to PNG or SVG. docs/leaderboards.md says more.

Charts, in page order: the overview (mean chance-normalised score against compute per series),
one per task (or task group: MMLU subjects, BBH tasks fold into one chart with a subject
picker), the precision frontier, and emergence verdicts. Every chart has tooltips (checkpoint,
step, value, stderr) and a series picker; task charts show each size's final checkpoint with
error bars, the fitted law with its prediction band, predicted sizes labelled, the emergence
onset with its interval, chance, and, on a toggle, each size's training curve.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

from ..records import latest_by
from .plots import x_axis

__all__ = ["task_groups", "overview_spec", "task_spec", "precision_spec", "emergence_spec",
           "spec_json", "vega_bundle", "VEGA_ASSET"]

#: Where the page's script bundle is written, relative to index.html.
VEGA_ASSET = "assets/vega.js"
_WIDTH, _HEIGHT = 420, 260
#: Families of subtasks folded into one chart (lm-eval's names, and the older harness's
#: ``hendrycksTest-`` ones the Pythia evals use).
_GROUPS = (("mmlu", ("mmlu_", "hendrycksTest-")), ("bbh", ("bbh_",)),
           ("bigbench", ("bigbench_",)))


def vega_bundle() -> bytes:
    """Vega, Vega-Lite and vega-embed in one script (from vl-convert-python; its version fixes
    the bytes)."""
    import vl_convert

    from ..versions import package_version

    head = (f"/* evalsuite leaderboard asset: Vega, Vega-Lite and vega-embed as bundled by "
            f"vl-convert-python {package_version('vl-convert-python')} (their BSD-3-Clause "
            "licenses apply); not built from result rows. */\n")
    return head.encode("utf-8") + vl_convert.javascript_bundle().encode("utf-8")


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    if not math.isfinite(f):
        return None
    return float(f"{f:.6g}")


def spec_json(spec: Mapping[str, Any]) -> str:
    """The specification as JSON safe inside a <script type="application/json"> element."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    # no <, > or & at all: nothing in the data can end the element or open a comment
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def task_groups(tasks: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(entry name, its tasks) in page order: families of 3 or more subtasks (mmlu_*, bbh_*,
    bigbench_*) fold into one entry; every other task is its own."""
    out: dict[str, list[str]] = {}
    for task in sorted(tasks):
        name = task
        for group, prefixes in _GROUPS:
            if task.startswith(prefixes) and sum(t.startswith(prefixes) for t in tasks) >= 3:
                name = group
        out.setdefault(name, []).append(task)
    return sorted(out.items())


def _series_param(series: Sequence[str]) -> dict[str, Any]:
    return {"name": "pick", "value": "all",
            "bind": {"input": "select", "options": ["all", *sorted(series)],
                     "name": "series "}}


_PICKED = "pick == 'all' || datum.s == pick"


def _base(title: str, x_title: str, y_title: str, log_x: bool = True) -> dict[str, Any]:
    return {"title": {"text": title, "anchor": "start", "fontSize": 13},
            "width": _WIDTH, "height": _HEIGHT,
            "config": {"view": {"stroke": None},
                       "legend": {"orient": "right", "limit": 160, "symbolOpacity": 1}},
            "encoding": {"x": {"field": "x", "type": "quantitative", "title": x_title,
                               "scale": {"type": "log" if log_x else "linear"},
                               "axis": {"format": ".1e" if log_x else "~s",
                                        "labelOverlap": "greedy", "labelFlush": True}},
                         "y": {"field": "y", "type": "quantitative", "title": y_title}}}


def _tooltip(*fields: tuple[str, str, str]) -> list[dict[str, Any]]:
    return [{"field": f, "title": t, "type": k, **({"format": ".4f"} if k == "quantitative"
                                                   and f in ("y", "e") else {})}
            for f, t, k in fields]


_POINT_TIP = _tooltip(("c", "checkpoint", "nominal"), ("s", "series", "nominal"),
                      ("z", "size", "nominal"), ("t", "step", "nominal"),
                      ("p", "precision", "nominal"), ("y", "value", "quantitative"),
                      ("e", "stderr", "quantitative"), ("x", "x", "quantitative"))


def overview_spec(cells: Sequence[Any]) -> dict[str, Any] | None:
    """Mean chance-normalised score over tasks against compute, per series (each size's latest
    checkpoint at its widest precision); None without normalised scores and compute."""
    scored = [c for c in cells if c.score is not None and c.compute_flops]
    if not scored:
        return None
    latest = latest_by(scored, key=lambda c: (c.series, c.size, c.task, c.precision,
                                               c.num_fewshot), step=lambda c: c.step or 0)
    family = {t: name for name, ts in task_groups(sorted({c.task for c in scored})) for t in ts}
    groups: dict[tuple, dict[tuple, list]] = {}
    for c in latest.values():  # each task family (MMLU subjects, ...) counts as one task
        groups.setdefault((c.series, c.size, c.precision), {}).setdefault(
            (family[c.task], c.num_fewshot), []).append(c)
    # every point averages the same tasks: those every series x size has, else (no task in
    # common) each series the tasks all its sizes have, and the title says so
    everywhere = set.intersection(*(set(g) for g in groups.values()))
    per_series: dict[tuple, set] = {}
    for (s, z, p), g in groups.items():
        per_series[(s, p)] = set(g) if (s, p) not in per_series else per_series[(s, p)] & set(g)
    values = []
    for (s, z, p), g in sorted(groups.items()):
        keep = everywhere or per_series[(s, p)]
        scores = [sum(c.score for c in g[k]) / len(g[k]) for k in sorted(keep, key=str)]
        flops = [c.compute_flops for k in keep for c in g[k]]
        if not scores:
            continue
        values.append({"s": s, "z": z, "p": p, "x": _num(sum(flops) / len(flops)),
                       "y": _num(sum(scores) / len(scores)), "n": len(scores)})
    if not values:
        return None
    names = sorted({k[0] for k in everywhere})
    subtitle = (f"mean over the {len(everywhere)} tasks every series has: "
                + ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
                if everywhere else "the series share no task: each averages the tasks all its "
                                   "sizes have (not comparable across series)")
    spec = _base("Overview: mean chance-normalised score across tasks", "training compute (FLOPs)",
                 "mean chance-normalised score")
    spec["title"]["subtitle"] = subtitle
    spec.update({"data": {"values": values}, "params": [_series_param({v["s"] for v in values})],
                 "transform": [{"filter": _PICKED}],
                 "layer": [{"mark": {"type": "line", "point": True},
                            "encoding": {"color": {"field": "s", "type": "nominal",
                                                   "title": "series"},
                                         "detail": {"field": "p"},
                                         "tooltip": _tooltip(("s", "series", "nominal"),
                                                             ("z", "size", "nominal"),
                                                             ("p", "precision", "nominal"),
                                                             ("y", "mean score", "quantitative"),
                                                             ("n", "tasks (families as one)",
                                                              "quantitative"))}}]})
    spec["width"] = 2 * _WIDTH
    return spec


def task_spec(name: str, tasks: Sequence[str], cells: Sequence[Any], curves: Sequence[Any] = (),
              predicted: Sequence[Any] = (), onsets: Sequence[Mapping[str, Any]] = (),
              flops_basis: str = "total") -> dict[str, Any] | None:
    """One task (or a group of subtasks, averaged, with a subject picker) against compute."""
    mine = [c for c in cells if c.task in tasks and c.plot_value is not None]
    if not mine:
        return None
    x_name, x_label = x_axis(mine, flops_basis)
    grouped = len(tasks) > 1
    points = []
    finals = latest_by(mine, key=lambda c: (c.task, c.series, c.size, c.precision, c.num_fewshot),
                       step=lambda c: c.step or 0)
    final_keys = {id(c) for c in finals.values()}
    several_shots = len({c.num_fewshot for c in mine}) > 1
    missing = 0
    for c in sorted(mine, key=lambda c: (c.task, c.series, c.size, c.precision,
                                         c.num_fewshot or 0, c.step or 0)):
        x = getattr(c, x_name)
        if x is None:
            missing += 1
            continue
        if x <= 0:  # step 0: no compute yet, and no place on a log axis
            continue
        if grouped and id(c) not in final_keys:
            continue  # a group draws each size's final checkpoint only (page weight)
        err = c.score_stderr if c.score is not None else c.stderr
        s = c.series + (f" {c.num_fewshot}-shot" if several_shots else "")
        point = {"s": s, "z": c.size, "p": c.precision,
                 "t": "final" if c.step is None else str(c.step), "x": _num(x),
                 "y": _num(c.plot_value), "e": _num(err)}
        if id(c) in final_keys:
            point["f"] = 1
        if c.limit:
            point["l"] = int(c.limit)  # scored on the first items only: drawn as a triangle
        if grouped:
            point["task"] = c.task
        points.append(point)
    if not points:
        return None
    if grouped:  # the mean over subtasks of each series x size x precision, plus a picker
        means: dict[tuple, list] = {}
        for p in points:
            means.setdefault((p["s"], p["z"], p["p"], p["t"]), []).append(p)
        for (s, z, prec, t), ps in sorted(means.items()):
            points.append({"task": f"{name} (mean of {len(tasks)})", "s": s, "z": z, "p": prec,
                           "t": t, "x": _num(sum(p["x"] for p in ps) / len(ps)),
                           "y": _num(sum(p["y"] for p in ps) / len(ps)), "f": 1})
    normalised = any(c.score is not None for c in mine)
    y_title = ("chance-normalised " if normalised else "") + "/".join(sorted({c.metric for c in mine}))
    title = f"{name}: {len(tasks)} subtasks" if grouped else name
    spec = _base(title, x_label, y_title, log_x=True)
    if missing:
        spec["title"]["subtitle"] = (f"{missing} cells without {x_name} not shown (tokens seen "
                                     "unknown: evalsuite series PATH --tokens-per-step N --annotate)")
    by_step = x_name == "step"  # no compute: each size's curve over steps is the picture
    params = [_series_param({p["s"] for p in points})]
    # the checkpoint label and each size's line key, computed in the page (smaller data)
    transform: list[dict[str, Any]] = [
        {"filter": _PICKED}, {"calculate": "datum.s + ' ' + datum.z + ' @' + datum.t", "as": "c"},
        {"calculate": "datum.s + '|' + datum.z + '|' + datum.p", "as": "line"}]
    if grouped:
        options = [f"{name} (mean of {len(tasks)})"] + sorted(tasks)
        params.append({"name": "subtask", "value": options[0],
                       "bind": {"input": "select", "options": options, "name": "subtask "}})
        transform.append({"filter": "datum.task == subtask"})
    else:
        params.append({"name": "steps", "value": by_step,
                       "bind": {"input": "checkbox", "name": "training curves "}})
    color = {"field": "s", "type": "nominal", "title": "series"}
    layers: list[dict[str, Any]] = []  # the measured points, drawn above bands and rules
    if not grouped:
        layers.append({"transform": [{"filter": "steps"}],
                       "mark": {"type": "line", "strokeWidth": 1, "opacity": 0.45},
                       "encoding": {"color": color, "detail": {"field": "line"},
                                    "order": {"field": "x"}}})
    finals_only = {"filter": "datum.f == 1"}
    if not by_step:  # across sizes: each size's final checkpoint, joined per series
        layers.append({"transform": [finals_only], "mark": {"type": "line", "strokeWidth": 1.5},
                       "encoding": {"color": color, "detail": {"field": "p"},
                                    "order": {"field": "x"}}})
    layers += [
        {"transform": [finals_only, {"filter": "isValid(datum.e)"},
                       {"calculate": "datum.y - datum.e", "as": "lo"},
                       {"calculate": "datum.y + datum.e", "as": "hi"}],
         "mark": {"type": "rule"}, "encoding": {"color": color, "y": {"field": "lo",
                                                                        "type": "quantitative"},
                                                 "y2": {"field": "hi"}}},
        {"transform": [{"filter": "datum.f == 1 || steps" if not grouped else "datum.f == 1"}],
         "mark": {"type": "point", "filled": True, "size": 40},
         "encoding": {"color": color, "tooltip": _POINT_TIP + (_tooltip(
             ("l", "--limit (items)", "quantitative")) if any("l" in p for p in points) else []),
                      "shape": {"condition": {"test": "isValid(datum.l)",
                                              "value": "triangle-up"}, "value": "circle"}}},
    ]
    under: list[dict[str, Any]] = []  # bands, fits and markers below the points
    over: list[dict[str, Any]] = []  # predictions
    if normalised:
        under.append({"data": {"values": [{"chance": 0}]}, "mark": {"type": "rule",
                                                                    "strokeDash": [2, 2],
                                                                    "color": "#888"},
                       "encoding": {"y": {"field": "chance", "type": "quantitative"},
                                    "x": {"value": 0}, "x2": {"value": _WIDTH}}})
    fit_rows, pred_rows = [], []
    if x_name == "compute_flops" and not grouped:
        for cv in curves:
            s = cv.label.rsplit(" (", 1)[0]
            for i, (x, y) in enumerate(zip(cv.x, cv.y)):
                fit_rows.append({"s": s, "fit": cv.label, "x": _num(x), "y": _num(y),
                                 "lo": _num(cv.lower[i]) if cv.lower else None,
                                 "hi": _num(cv.upper[i]) if cv.upper else None})
        names = sorted({p["s"] for p in points} | {r["s"] for r in fit_rows}, key=len,
                       reverse=True)
        for pp in predicted:  # "<series> <size>": the longest series name it starts with
            owner = next((n for n in names if pp.label.startswith(n + " ")), pp.label)
            pred_rows.append({"s": owner, "label": pp.label,
                              "x": _num(pp.x), "y": _num(pp.y), "lo": _num(pp.lower),
                              "hi": _num(pp.upper)})
    if fit_rows:
        fit_color = {"field": "s", "type": "nominal", "title": "series"}
        under += [
            {"data": {"values": fit_rows}, "transform": [{"filter": _PICKED}],
             "mark": {"type": "area", "opacity": 0.15},
             "encoding": {"color": fit_color, "detail": {"field": "fit"},
                          "y": {"field": "lo", "type": "quantitative"}, "y2": {"field": "hi"}}},
            {"data": {"values": fit_rows}, "transform": [{"filter": _PICKED}],
             "mark": {"type": "line", "strokeDash": [5, 3], "strokeWidth": 1.2},
             "encoding": {"color": fit_color, "detail": {"field": "fit"},
                          "tooltip": _tooltip(("fit", "fitted law (90% band)", "nominal"),
                                              ("y", "mean", "quantitative"),
                                              ("x", "x", "quantitative"))}}]
    if pred_rows:
        tip = _tooltip(("label", "predicted", "nominal"), ("y", "mean", "quantitative"),
                       ("lo", "90% lower", "quantitative"), ("hi", "90% upper", "quantitative"),
                       ("x", "x", "quantitative"))
        over += [
            {"data": {"values": pred_rows}, "transform": [{"filter": _PICKED}],
             "mark": {"type": "rule", "strokeDash": [2, 2]},
             "encoding": {"color": color, "y": {"field": "lo", "type": "quantitative"},
                          "y2": {"field": "hi"}}},
            {"data": {"values": pred_rows}, "transform": [{"filter": _PICKED}],
             "mark": {"type": "point", "shape": "diamond", "size": 70, "filled": False},
             "encoding": {"color": color, "tooltip": tip}},
            # labels overlap with many series: then they show once one series is picked
            {"data": {"values": pred_rows}, "transform": [
                {"filter": _PICKED if len({r["s"] for r in pred_rows}) <= 2
                 else "pick != 'all' && datum.s == pick"}],
             "mark": {"type": "text", "dx": 6, "dy": -8, "align": "left", "fontSize": 10},
             "encoding": {"text": {"field": "label"}, "color": color}}]
    onset_rows = [{**o, "s": f"{o['s']} {o.get('shots')}-shot" if several_shots else o["s"]}
                  for o in onsets if o.get("x") and x_name == "compute_flops" and not grouped]
    if onset_rows:
        under += [
            {"data": {"values": onset_rows}, "transform": [{"filter": _PICKED},
                                                           {"filter": "isValid(datum.lo)"}],
             "mark": {"type": "rect", "opacity": 0.12, "color": "#333"},
             "encoding": {"x": {"field": "lo", "type": "quantitative"}, "x2": {"field": "hi"},
                          "y": {"value": 0}, "y2": {"value": _HEIGHT}}},
            {"data": {"values": onset_rows}, "transform": [{"filter": _PICKED}],
             "mark": {"type": "rule", "color": "#333", "strokeWidth": 1.5, "strokeDash": [6, 3]},
             "encoding": {"y": {"value": 0}, "y2": {"value": _HEIGHT},
                          "tooltip": _tooltip(("s", "series", "nominal"),
                                              ("verdict", "emergence", "nominal"),
                                              ("x", "onset", "quantitative"),
                                              ("lo", "onset 90% lower", "quantitative"),
                                              ("hi", "onset 90% upper", "quantitative"))}}]
    spec.update({"data": {"values": points}, "params": params, "transform": transform,
                 "layer": under + layers + over})
    return spec


def precision_spec(table) -> dict[str, Any] | None:
    """Score against model bits, one point per checkpoint x precision, the frontier joined."""
    if table is None or not table.rows:
        return None
    col = {c: i for i, c in enumerate(table.columns)}
    values = []
    for r in table.rows:
        bits, score = r[col["model_bits"]], r[col["score"]]
        if bits is None or score is None:
            continue
        values.append({"task": r[col["task"]], "s": r[col["series"]], "z": r[col["size"]],
                       "t": str(r[col["step"]]), "p": r[col["precision"]], "x": _num(bits),
                       "y": _num(score), "e": _num(r[col["stderr"]]),
                       "frontier": r[col["frontier"]] == "yes",
                       "c": f"{r[col['series']]}-{r[col['size']]}@{r[col['step']]}"})
    if not values:
        return None
    tasks = sorted({v["task"] for v in values})
    spec = _base("Precision: score against model bits (frontier joined)", "model bits (weights)",
                 "score (chance-normalised where a chance level is known)")
    spec["title"]["subtitle"] = "one task at a time: pick it below (scales differ by metric)"
    task_param = {"name": "ptask", "value": tasks[0],
                  "bind": {"input": "select", "options": tasks, "name": "task "}}
    spec.update({"data": {"values": values},
                 "params": [_series_param({v["s"] for v in values}), task_param],
                 "transform": [{"filter": _PICKED}, {"filter": "datum.task == ptask"}],
                 "layer": [
                     {"transform": [{"filter": "datum.frontier"}],
                      "mark": {"type": "line", "strokeWidth": 1, "color": "#555"},
                      "encoding": {"detail": {"field": "task"}, "order": {"field": "x"}}},
                     {"mark": {"type": "point", "filled": True, "size": 45},
                      "encoding": {"color": {"field": "p", "type": "nominal",
                                             "title": "precision"},
                                   "shape": {"field": "task", "type": "nominal"},
                                   "tooltip": _tooltip(("task", "task", "nominal"),
                                                       ("c", "checkpoint", "nominal"),
                                                       ("p", "precision", "nominal"),
                                                       ("y", "value", "quantitative"),
                                                       ("e", "stderr", "quantitative"),
                                                       ("frontier", "on the frontier",
                                                        "nominal"))}}]})
    return spec


def emergence_spec(table) -> dict[str, Any] | None:
    """How many curves got each verdict, per task or task family, across sizes or steps (a
    picker)."""
    if table is None or not table.rows:
        return None
    col = {c: i for i, c in enumerate(table.columns)}
    family = {t: name for name, ts in task_groups(sorted({r[col["task"]] for r in table.rows}))
              for t in ts}
    counts: dict[tuple, int] = {}
    for r in table.rows:  # a task family (MMLU subjects, ...) is one bar
        key = (family[r[col["task"]]], r[col["across"]], r[col["verdict"]], r[col["series"]])
        counts[key] = counts.get(key, 0) + 1
    values = [{"task": t, "across": a, "verdict": v, "s": s, "n": n}
              for (t, a, v, s), n in sorted(counts.items())]
    return {"title": {"text": "Emergence verdicts per task (curves across sizes and steps)",
                      "anchor": "start", "fontSize": 13},
            "width": _WIDTH, "height": {"step": 16},
            "config": {"view": {"stroke": None}},
            "data": {"values": values},
            "params": [_series_param({v["s"] for v in values}),
                       {"name": "across", "value": "sizes",
                        "bind": {"input": "select", "options": ["sizes", "steps"],
                                 "name": "curves across "}}],
            "transform": [{"filter": _PICKED}, {"filter": "datum.across == across"}],
            "mark": {"type": "bar"},
            "encoding": {"y": {"field": "task", "type": "nominal", "title": None},
                         "x": {"field": "n", "type": "quantitative", "aggregate": "sum",
                               "title": "curves"},
                         "color": {"field": "verdict", "type": "nominal"},
                         "tooltip": [{"field": "task", "type": "nominal"},
                                     {"field": "s", "title": "series", "type": "nominal"},
                                     {"field": "across", "type": "nominal"},
                                     {"field": "verdict", "type": "nominal"},
                                     {"field": "n", "title": "curves", "type": "quantitative",
                                      "aggregate": "sum"}]}}
