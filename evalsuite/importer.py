"""Import lm-evaluation-harness result JSON files as ResultRow records.

So that public evaluations (for example EleutherAI's Pythia evals) sit beside our own runs and
feed the same scaling fits and leaderboards. Reads the 2023 "v0.3" format (``results``,
``versions``, ``config``) and the 0.4 format (``results`` keyed ``"acc,none"``; the filter suffix
is dropped here so that lm-eval's key format stays inside this adapter). The shots of a task
come from 0.4's ``n-shot`` section, else ``configs.<task>.num_fewshot``, else
``config.num_fewshot`` (0.3). A section or field of the wrong shape or type (``config`` a list,
``num_fewshot: "five"``) is an :class:`ImportError_` naming the file and the field.

Which model a file belongs to:

1. ``config.model_args`` ``pretrained=<name>`` (and ``revision=step<N>``), else the file stem;
2. an entry for that name in the user's mapping file (``--mapping``), which wins; else
3. the built-in rules for Pythia (``pythia-v1.1-<size>[-deduped|-bf16|-<k>MtokBS]``), OPT and BLOOM.

The step comes from the file name (``_step<N>``), else ``revision=step<N>``, else the mapping,
else None (a single released model).

Mapping file (YAML or JSON)::

    models:
      facebook/opt-125m:        # the pretrained= name, or the file stem
        series: opt
        size: 125m
        n_params: 125000000     # optional; never guessed beyond the rules documented below
        n_params_nonembedding: 85000000
        tokens_seen: 180000000000    # or tokens_per_step: 2097152 (times the step)
        step: null
        precision: auto
    tasks:                      # optional: override the task -> primary metric table
      my_task: {metric: acc, chance: 0.25}

Task -> primary metric (documented in docs/scaling.md, "Importing public evaluations"): ``acc`` for every scored task
(lambada_openai, piqa, winogrande, wsc, arc_easy, arc_challenge, sciq, logiqa, hendrycksTest-*).
Other metrics (``acc_norm``, ``ppl``) are imported as non-primary rows. ``crows_pairs_*`` (a bias
measure) and perplexities have no primary metric: they are reported apart, never scored.

Pythia facts used (Biderman et al. 2023, "Pythia", model table and training setup): total and
non-embedding parameter counts per size; 2,097,152 tokens per step (1024 x 2048) for the standard
runs, step 143000 = ~300B tokens; the batch-size ablations (``-<k>MtokBS``) use k x 2^20 tokens per
step (k = 0.25, 0.5, 1), so their steps count at their own batch size; each is its own series
(``pythia-0.5MtokBS``) so that the standard series holds one run per size. OPT and BLOOM sizes come
from the size in the name (nominal counts, rounded as the name is); their token counts are not
in the files and are left unknown.

Precision: the files do not record the dtype the harness loaded the weights in, so imported rows
carry ``precision="auto"`` (the harness default) rather than a guess.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .records import ResultRow, compute_flops, config_hash, metric_higher_is_better

log = logging.getLogger(__name__)

__all__ = ["ImportError_", "ImportedModel", "TASK_METRICS", "PYTHIA_PARAMS", "find_result_files",
           "read_result_file", "import_results", "import_into_store", "append_imported",
           "load_mapping"]


class ImportError_(ValueError):
    """A result file or mapping that cannot be imported; the message names the file and the fix."""


#: Pythia parameter counts (total, non-embedding), from the Pythia model table (Biderman et al.
#: 2023). They satisfy total = non-embedding + 2 * vocab * d_model (untied embeddings).
PYTHIA_PARAMS: dict[str, tuple[int, int]] = {
    "70m": (70_426_624, 18_915_328),
    "160m": (162_322_944, 85_056_000),
    "410m": (405_334_016, 302_311_424),
    "1b": (1_011_781_632, 805_736_448),
    "1.4b": (1_414_647_808, 1_208_602_624),
    "2.8b": (2_775_208_960, 2_517_652_480),
    "6.9b": (6_857_302_016, 6_444_163_072),
    "12b": (11_846_072_320, 11_327_027_200),
}
PYTHIA_TOKENS_PER_STEP = 2_097_152  # 1024 sequences x 2048 tokens

#: task -> (primary metric, chance level of that metric). None: no primary metric (reported apart).
TASK_METRICS: dict[str, tuple[str, float] | None] = {
    "lambada_openai": ("acc", 0.0),   # exact last-word match; a guesser scores ~0
    "piqa": ("acc", 0.5),
    "winogrande": ("acc", 0.5),
    "wsc": ("acc", 0.5),
    "arc_easy": ("acc", 0.25),        # mostly 4 options (a few 3 or 5)
    "arc_challenge": ("acc", 0.25),
    "sciq": ("acc", 0.25),
    "logiqa": ("acc", 0.25),
}
MMLU_PREFIXES = ("hendrycksTest-", "mmlu_")
UNSCORED_PREFIXES = ("crows_pairs",)


def task_metric(task: str, overrides: Mapping[str, Any] | None = None) -> tuple[str, float] | None:
    """Primary metric and chance of a task, or None when the task is reported apart."""
    if overrides and task in overrides:
        o = overrides[task]
        if o is None:
            return None
        return str(o["metric"]), float(o.get("chance", 0.0))
    if task in TASK_METRICS:
        return TASK_METRICS[task]
    if task.startswith(MMLU_PREFIXES):
        return ("acc", 0.25)
    if task.startswith(UNSCORED_PREFIXES):
        return None
    return ("acc", 0.0) if task else None


@dataclass(frozen=True)
class ImportedModel:
    """Who a result file belongs to."""

    series: str
    size: str
    step: int | None
    n_params: int | None = None
    n_params_nonembedding: int | None = None
    tokens_seen: int | None = None
    tokens_source: str = "unknown"
    precision: str = "auto"

    @property
    def checkpoint_id(self) -> str:
        step = "final" if self.step is None else str(self.step)
        return f"{self.series}-{self.size}@{step}:{self.precision}"


_PYTHIA_RE = re.compile(
    r"^(?:EleutherAI/)?(?P<prefix>intervention-)?pythia-(?:v1\.1-)?(?P<size>\d+(?:\.\d+)?[mb])"
    r"(?P<suffix>(?:-[A-Za-z0-9.]+)*)$")
_SIZE_RE = re.compile(r"(\d+(?:[.b]\d+)?)([mb])$")


def _nominal_params(size: str) -> int | None:
    """``125m`` -> 125e6, ``1b7`` / ``1.7b`` -> 1.7e9 (BLOOM writes ``1b1``, ``7b1``)."""
    m = re.fullmatch(r"(\d+)(?:[.]?(\d+))?([mb])|(\d+)([mb])(\d+)", size)
    if not m:
        return None
    if m.group(4):
        number = float(f"{m.group(4)}.{m.group(6)}")
        unit = m.group(5)
    else:
        number = float(m.group(1) + ("." + m.group(2) if m.group(2) else ""))
        unit = m.group(3)
    return int(round(number * (1e6 if unit == "m" else 1e9)))


def _builtin_model(name: str, path: Path, step: int | None) -> ImportedModel | None:
    m = _PYTHIA_RE.match(name)
    if m:
        size = m.group("size")
        suffix = m.group("suffix").lstrip("-")
        parts = [p for p in suffix.split("-") if p] if suffix else []
        tokens_per_step = PYTHIA_TOKENS_PER_STEP
        series = "pythia"
        ablation = None
        extra: list[str] = []
        for p in parts:
            bs = re.fullmatch(r"(\d+(?:\.\d+)?)MtokBS", p)
            if bs:
                # a batch-size ablation is its own series (same sizes, other tokens per step)
                tokens_per_step = int(round(float(bs.group(1)) * 2**20))
                ablation = p
            elif p == "deduped":
                series = "pythia-deduped"
            else:  # bf16, long, ...
                extra.append(p)
        if ablation:
            series += "-" + ablation
        if m.group("prefix"):
            series += "-intervention"
        # The gender-intervention case study's "baseline" runs are the deduped model itself,
        # re-evaluated at extra steps on a subset of tasks: a separate campaign, kept apart.
        if path.parent.name == "baseline":
            series += "-baseline"
        size_label = "-".join([size] + extra)
        total, nonemb = PYTHIA_PARAMS.get(size, (None, None))
        tokens = None if step is None else step * tokens_per_step
        return ImportedModel(series=series, size=size_label, step=step, n_params=total,
                             n_params_nonembedding=nonemb, tokens_seen=tokens,
                             tokens_source="tokens_per_step" if tokens is not None else "unknown")
    for family in ("opt", "bloom"):
        fm = re.match(rf"^(?:[\w-]+/)?{family}-(\w+(?:\.\d+)?[mb]\d*)$", name)
        if fm:
            size = fm.group(1)
            return ImportedModel(series=family, size=size, step=step,
                                 n_params=_nominal_params(size))
    return None


def load_mapping(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read a mapping file (YAML or JSON) with ``models:`` and optional ``tasks:`` sections."""
    if path is None:
        return {"models": {}, "tasks": {}}
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ImportError_(f"cannot read mapping file {p}: {e.strerror}") from e
    try:
        if p.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # yaml and json raise different types
        raise ImportError_(f"mapping file {p} is not valid YAML/JSON: {e}") from e
    data = data or {}
    if not isinstance(data, dict) or not set(data) <= {"models", "tasks"}:
        raise ImportError_(f"mapping file {p}: expected top-level keys 'models' and/or 'tasks', "
                           f"got {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    models = data.get("models") or {}
    tasks = data.get("tasks") or {}
    for section, value in (("models", models), ("tasks", tasks)):
        if not isinstance(value, dict):
            raise ImportError_(f"mapping file {p}: '{section}' must be a mapping of names to "
                               f"entries, got {type(value).__name__}")
    for name, entry in tasks.items():
        if entry is not None and (not isinstance(entry, dict) or "metric" not in entry):
            raise ImportError_(f"mapping file {p}: tasks.{name} needs 'metric' (for example "
                               "{metric: acc, chance: 0.25}), or null for no primary metric")
    for name, entry in models.items():
        if not isinstance(entry, dict) or "series" not in entry or "size" not in entry:
            raise ImportError_(f"mapping file {p}: models.{name} needs at least 'series' and "
                               "'size' (for example {series: opt, size: 125m})")
    return {"models": models, "tasks": tasks}


def find_result_files(path: str | os.PathLike) -> list[Path]:
    """All ``*.json`` result files under a folder (sorted), or the file itself."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise ImportError_(f"{p} does not exist: pass an lm-eval result JSON file or a folder of them")
    return sorted(f for f in p.rglob("*.json") if f.is_file())


def _whole(value: Any, where: str) -> int | None:
    """A whole number read from a file field (null -> None); ImportError_ naming ``where``."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                f = float(value)
            except ValueError:
                f = math.nan
            if f.is_integer():
                return int(f)
    raise ImportError_(f"{where} must be a whole number, got {value!r}; fix it or leave the file "
                       "out of the import")


def _mapping_section(path: Path, data: Mapping[str, Any], name: str) -> dict:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImportError_(f"{path}: '{name}' must be an object (in lm-evaluation-harness output "
                           f"it maps names to values), got a {type(value).__name__}; is this an "
                           "lm-eval results file?")
    return value


def _task_shots(path: Path, task: str, config: Mapping[str, Any], configs: Mapping[str, Any],
                n_shot: Mapping[str, Any]) -> int | None:
    """Shots of one task: lm-eval 0.4's ``n-shot`` and ``configs`` sections, else ``config``."""
    if n_shot.get(task) is not None:
        value, where = n_shot[task], f"n-shot.{task}"
    else:
        task_config = configs.get(task)
        if task_config is not None and not isinstance(task_config, dict):
            raise ImportError_(f"{path}: configs.{task} must be an object (the task's settings), "
                               f"got a {type(task_config).__name__}")
        if task_config and task_config.get("num_fewshot") is not None:
            value, where = task_config["num_fewshot"], f"configs.{task}.num_fewshot"
        else:
            value, where = config.get("num_fewshot"), "config.num_fewshot"
    shots = _whole(value, f"{path}: {where}")
    if shots is not None and shots < 0:
        raise ImportError_(f"{path}: {where} must be 0 or more shots, got {shots}")
    return shots


def _model_args(config: Mapping[str, Any]) -> dict[str, str]:
    args = config.get("model_args") or ""
    if isinstance(args, dict):
        return {str(k): str(v) for k, v in args.items()}
    out = {}
    for part in str(args).split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _step_from(path: Path, margs: Mapping[str, str]) -> int | None:
    m = re.search(r"_step(\d+)$", path.stem)
    if m:
        return int(m.group(1))
    m = re.fullmatch(r"step(\d+)", margs.get("revision", ""))
    return int(m.group(1)) if m else None


def _resolve_model(path: Path, config: Mapping[str, Any], mapping: Mapping[str, Any]) -> ImportedModel:
    margs = _model_args(config)
    name = margs.get("pretrained") or path.stem
    step = _step_from(path, margs)
    entry = None
    for key in (name, name.split("/")[-1], path.stem):
        if key in mapping.get("models", {}):
            entry = mapping["models"][key]
            break
    builtin = _builtin_model(name.split("/")[-1] if "pythia" in name else name, path, step)
    if entry is None:
        if builtin is None:
            raise ImportError_(
                f"{path}: cannot tell which model this is (pretrained={name!r}). Add it to a "
                f"mapping file, e.g. 'models: {{{name}: {{series: NAME, size: LABEL, n_params: N}}}}', "
                "and pass --mapping FILE")
        return builtin
    where = f"{path}: mapping entry models.{key}"
    step = _whole(entry.get("step", step), f"{where}.step")
    n_params = _whole(entry.get("n_params", builtin.n_params if builtin else None),
                      f"{where}.n_params")
    tokens = _whole(entry.get("tokens_seen"), f"{where}.tokens_seen")
    source = "manifest" if tokens is not None else "unknown"
    tokens_per_step = _whole(entry.get("tokens_per_step"), f"{where}.tokens_per_step")
    if tokens is None and tokens_per_step is not None and step is not None:
        tokens, source = tokens_per_step * step, "tokens_per_step"
    if tokens is None and builtin is not None:
        tokens, source = builtin.tokens_seen, builtin.tokens_source
    return ImportedModel(
        series=str(entry["series"]), size=str(entry["size"]), step=step, n_params=n_params,
        n_params_nonembedding=_whole(entry.get("n_params_nonembedding",
                                               builtin.n_params_nonembedding if builtin else None),
                                     f"{where}.n_params_nonembedding"),
        tokens_seen=tokens, tokens_source=source, precision=str(entry.get("precision", "auto")))


def _split_metric_key(key: str) -> tuple[str, bool]:
    """``"acc,none"`` -> (``acc``, False); ``acc_stderr`` -> (``acc``, True)."""
    base = key.split(",", 1)[0]
    if base.endswith("_stderr"):
        return base[: -len("_stderr")], True
    return base, False


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _n_from_stderr(p: float | None, se: float | None) -> int | None:
    """Items behind a mean-of-0/1 metric, from lm-eval's stderr sqrt(p(1-p)/(n-1))."""
    if p is None or se is None or se <= 0 or not 0 < p < 1:
        return None
    return int(round(p * (1 - p) / se**2 + 1))


def read_result_file(path: str | os.PathLike, mapping: Mapping[str, Any] | None = None,
                     timestamp: str = "") -> list[ResultRow]:
    """One lm-eval result JSON file -> ResultRows (one per task x metric)."""
    path = Path(path)
    mapping = mapping or {"models": {}, "tasks": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ImportError_(f"{path}: not a readable JSON file ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ImportError_(f"{path}: no 'results' object; expected an lm-evaluation-harness "
                           "output file ({'results': {task: {metric: value}}, 'config': ...})")
    config = _mapping_section(path, data, "config")
    configs = _mapping_section(path, data, "configs")  # lm-eval 0.4: task -> its settings
    n_shots = _mapping_section(path, data, "n-shot")    # lm-eval 0.4: task -> shots used
    versions_tasks = _mapping_section(path, data, "versions")
    model = _resolve_model(path, config, mapping)
    limit = config.get("limit")
    if isinstance(limit, float) and 0 < limit < 1:
        raise ImportError_(f"{path}: config.limit {limit} is a fraction of each task's items; "
                           "result rows record a number of items, so this file cannot be imported")
    limit = _whole(limit, f"{path}: config.limit")
    harness = "lm-eval " + ("0.4" if any("," in k for r in data["results"].values()
                                          if isinstance(r, dict) for k in r) else "0.3")
    file_digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    rows: list[ResultRow] = []
    for task, metrics in sorted(data["results"].items()):
        if not isinstance(metrics, dict):
            continue
        n_shot = _task_shots(path, task, config, configs, n_shots)
        values: dict[str, float | None] = {}
        stderrs: dict[str, float | None] = {}
        for key, v in metrics.items():
            if key == "alias":
                continue
            name, is_se = _split_metric_key(key)
            (stderrs if is_se else values)[name] = _finite(v)
        primary = task_metric(task, mapping.get("tasks"))
        n_primary = None
        if primary and primary[0] in values:
            n_primary = _n_from_stderr(values[primary[0]], stderrs.get(primary[0]))
        cell = config_hash({"checkpoint": model.checkpoint_id, "task": task, "num_fewshot": n_shot,
                            "source": "import"})
        for metric, value in sorted(values.items()):
            is_primary = bool(primary) and metric == primary[0]
            chance = primary[1] if is_primary else None
            if primary and metric in ("acc", "acc_norm") and chance is None:
                chance = primary[1]
            rows.append(ResultRow(
                checkpoint_id=model.checkpoint_id, series=model.series, size=model.size,
                step=model.step, n_params=model.n_params,
                n_params_nonembedding=model.n_params_nonembedding,
                tokens_seen=model.tokens_seen,
                compute_flops=compute_flops(model.n_params, model.tokens_seen), flops_basis="total",
                weight_hash=None, precision=model.precision, task=task,
                task_version=str(versions_tasks.get(task, "")), metric=metric,
                is_primary=is_primary, value=value, stderr=stderrs.get(metric),
                n_samples=n_primary if metric in ("acc", "acc_norm") else None,
                num_fewshot=n_shot, chance=chance,
                higher_is_better=metric_higher_is_better(metric),
                limit=limit, batch_size=str(config.get("batch_size")),
                engine=str(config.get("model")), device=None, cell_key=cell,
                config_hash=config_hash({"model_args": config.get("model_args"),
                                         "num_fewshot": n_shot, "limit": limit}),
                versions={"harness": harness, "tokens_source": model.tokens_source,
                          "file_sha256": file_digest},
                source=f"import:{path}", timestamp=timestamp))
    return rows


def import_results(paths: str | os.PathLike | Iterable[str | os.PathLike],
                   mapping: Mapping[str, Any] | None = None, timestamp: str = "") -> list[ResultRow]:
    """Rows from every result file under ``paths`` (files or folders)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in paths:
        files.extend(find_result_files(p))
    rows: list[ResultRow] = []
    for f in files:
        rows.extend(read_result_file(f, mapping, timestamp=timestamp))
    return rows


def append_imported(store, rows: Iterable[ResultRow]) -> tuple[int, int]:
    """Append imported rows to a ResultStore under its lock, each cell with its own commit.

    Cells the store already holds are skipped, and so is a cell a second file of the same import
    maps to again. One append per result file: each of its cells is committed on its own, so a
    write cut short keeps every cell whole or leaves it out (and one fsync per file, not per
    cell: 889 rather than 67,000 for the Pythia evals). Returns (rows written, cells skipped).
    Raises StoreError (StoreLockedError while a run or another import writes the folder).
    """
    cells: dict[str, list[ResultRow]] = {}
    for r in rows:
        cells.setdefault(r.cell_key, []).append(r)
    written = skipped = 0
    with store.lock():
        done = store.done_cells()
        by_file: dict[str, list[ResultRow]] = {}
        for key, cell_rows in cells.items():
            if key in done:
                skipped += 1
                continue
            sources = {r.source for r in cell_rows}
            if len(sources) > 1:  # two files say they are the same checkpoint x task x shots
                first = min(sources)
                log.warning("%s are the same checkpoint x task x shots (%s %s, cell %s): "
                            "importing the first only", ", ".join(sorted(src.split(":", 1)[-1]
                                                                        for src in sources)),
                            cell_rows[0].checkpoint_id, cell_rows[0].task, key)
                cell_rows = [r for r in cell_rows if r.source == first]
                skipped += len(sources) - 1
            by_file.setdefault(cell_rows[0].source, []).extend(cell_rows)
        for file_rows in by_file.values():
            written += store.append(file_rows)
    return written, skipped


def import_into_store(store, paths, mapping: Mapping[str, Any] | None = None,
                      timestamp: str = "") -> tuple[int, int]:
    """Read result files and append their rows to a ResultStore (see :func:`append_imported`).

    Returns (rows written, cells skipped). Importing the same files twice writes nothing new.
    """
    return append_imported(store, import_results(paths, mapping, timestamp=timestamp))
