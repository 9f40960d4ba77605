"""Task registry: bundled ``tasks/*.yaml``, user YAML folders and any lm-eval task by name.

A bundled task is a short evalsuite YAML that names the lm-eval task it wraps, its one primary
metric and chance level, and where its items live in a local data folder::

    lm_eval_task: arc_easy        # lm-eval's own definition: prompts, choices, metrics
    primary_metric: acc
    chance: 0.25
    version: "1"
    data:
      adapter: jsonl              # evalsuite.datasets.ADAPTERS
      files: {test: arc/arc_easy_test.jsonl}

Only the data source changes (lm-eval's ``custom_dataset`` hook), so the numbers are lm-eval's.
Without a data folder the task downloads lm-eval's usual hub dataset.

Listing tasks never builds lm-eval's full index (~12 s): bundled specs are read from their own
small files, and a built-in lm-eval task is located by a text scan of lm-eval's task folder,
cached per lm-eval version.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

import yaml

from .records import TaskSpec

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "tasks"

_SPEC_KEYS = {"lm_eval_task", "lm_eval_config", "primary_metric", "chance", "version",
              "description", "data", "higher_is_better", "num_fewshot"}
_DATA_KEYS = {"adapter", "files"}


class TaskError(RuntimeError):
    """An unknown task or a malformed task file."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise TaskError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TaskError(f"task file {path} is not UTF-8 text: re-save it as UTF-8") from e
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except TaskError as e:
        raise TaskError(f"malformed task file {path}: {e}; remove the repeated key") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise TaskError(f"malformed task file {path}:{where} {getattr(e, 'problem', e)}; fix the "
                        "YAML syntax") from e
    if not isinstance(data, dict):
        raise TaskError(f"malformed task file {path}: expected a mapping of keys, got "
                        f"{type(data).__name__}")
    return data


# ---- lm-eval's own task files -----------------------------------------------------------

def _lm_eval_tasks_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise TaskError("lm-eval is not installed: pip install 'lm-eval[hf]'")
    return Path(list(spec.submodule_search_locations)[0]) / "tasks"


_TASK_LINE = re.compile(r"""^["']?task["']?\s*:\s*["']?([A-Za-z0-9_.\-]+)["']?\s*$""", re.M)


def lm_eval_task_index(cache_dir: Path | None = None) -> dict[str, str]:
    """Map lm-eval task name -> its YAML path, by scanning the task folder's text (cached)."""
    from importlib.metadata import version

    tasks_dir = _lm_eval_tasks_dir()
    cache_dir = cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "evalsuite"
    cache = cache_dir / f"lm_eval_tasks-{version('lm_eval')}.json"
    if cache.exists():
        try:
            data = json.loads(cache.read_text())
            if data.get("root") == str(tasks_dir):
                return data["tasks"]
        except (ValueError, KeyError):
            pass
    index: dict[str, str] = {}
    for path in tasks_dir.rglob("*.yaml"):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for m in _TASK_LINE.finditer(text):
            index.setdefault(m.group(1), str(path))
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"root": str(tasks_dir), "tasks": index}))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only home only costs the scan next time
    return index


class _PeekLoader(yaml.SafeLoader):
    """Reads lm-eval task YAML without importing lm-eval: ``!function`` stays a string."""


_PeekLoader.add_constructor("!function", lambda loader, node: f"!function {loader.construct_scalar(node)}")


def _peek_lm_eval_config(path: str | Path, _depth: int = 0) -> dict[str, Any]:
    """Includes merged, functions unresolved: enough for listing (output type, metrics, version)."""
    path = Path(path)
    cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_PeekLoader) or {}  # noqa: S506
    includes = cfg.pop("include", None)
    if includes is None or _depth > 8:
        return cfg
    merged: dict[str, Any] = {}
    for inc in includes if isinstance(includes, list) else [includes]:
        merged.update(_peek_lm_eval_config(path.parent / inc, _depth + 1))
    merged.update(cfg)
    return merged


def load_lm_eval_config(yaml_path: str | Path, *, resolve: bool = True) -> dict[str, Any]:
    """lm-eval's task config with includes and ``!function`` resolved (lm-eval's own loader).

    With ``resolve=False`` the file is only peeked at (no lm-eval import, no code loaded).
    """
    if resolve:
        from lm_eval.tasks._yaml_loader import load_yaml

        cfg = load_yaml(yaml_path, resolve_func=True)
    else:
        cfg = _peek_lm_eval_config(yaml_path)
    for key in ("tag", "group", "task_list"):
        cfg.pop(key, None)
    return cfg


# ---- the registry ----------------------------------------------------------------------

class TaskRegistry:
    """Resolves task names to TaskSpecs and builds lm-eval task objects for them.

    Args:
        include_paths: user folders of task YAMLs (lm-eval task files, optionally with an
            ``evalsuite:`` block giving ``primary_metric`` and ``chance``, or evalsuite specs).
            Only bundled tasks and these folders may run code (``!function``).
        data_dir: local data folder laid out like ``../shared/data/benchmarks``; None uses
            lm-eval's hub datasets.
    """

    def __init__(self, *, include_paths: Iterable[str | Path] = (), data_dir: str | Path | None = None,
                 bundled_dir: Path = BUNDLED_DIR):
        self.include_paths = [Path(p) for p in include_paths]
        self.data_dir = Path(data_dir) if data_dir else None
        self.bundled_dir = bundled_dir
        for p in self.include_paths:
            if not p.is_dir():
                raise TaskError(f"--include-path {p} is not a folder: pass a folder of task YAMLs")
        if self.data_dir is not None and not self.data_dir.is_dir():
            raise TaskError(f"data folder {self.data_dir} does not exist: pass --data-dir with a "
                            "folder laid out like ../shared/data/benchmarks, or omit it to use "
                            "lm-eval's hub datasets")
        self._files: dict[str, tuple[str, Path]] | None = None

    # -- discovery
    def _task_files(self) -> dict[str, tuple[str, Path]]:
        if self._files is None:
            files: dict[str, tuple[str, Path]] = {}
            for kind, folder in [("bundled", self.bundled_dir)] + [("user", p) for p in self.include_paths]:
                if folder.is_dir():
                    for path in sorted(folder.glob("*.y*ml")):
                        files[path.stem] = (kind, path)  # user folders override bundled names
            self._files = files
        return self._files

    def names(self) -> list[str]:
        """Bundled and user task names (lm-eval's built-ins are resolved on demand)."""
        return sorted(self._task_files())

    def specs(self) -> list[TaskSpec]:
        return [self.get(n) for n in self.names()]

    def get(self, name: str) -> TaskSpec:
        files = self._task_files()
        if name in files:
            kind, path = files[name]
            return self._spec_from_file(name, kind, path)
        index = lm_eval_task_index()
        if name in index:
            return self._spec_from_lm_eval(name, index[name])
        close = difflib.get_close_matches(name, list(files) + list(index), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise TaskError(f"unknown task {name!r}: not bundled in {self.bundled_dir}, not in "
                        f"--include-path folders, not an lm-eval task.{hint} "
                        "List tasks with `evalsuite tasks`.")

    def _spec_from_file(self, name: str, kind: str, path: Path) -> TaskSpec:
        raw = _read_yaml(path)
        if "lm_eval_task" in raw or "lm_eval_config" in raw:
            unknown = set(raw) - _SPEC_KEYS
            if unknown:
                raise TaskError(f"task file {path}: unknown key(s) {sorted(unknown)}; allowed: "
                                f"{sorted(_SPEC_KEYS)}")
            data = raw.get("data") or {}
            if set(data) - _DATA_KEYS:
                raise TaskError(f"task file {path}: unknown key(s) under data: "
                                f"{sorted(set(data) - _DATA_KEYS)}; allowed: {sorted(_DATA_KEYS)}")
            if "primary_metric" not in raw:
                raise TaskError(f"task file {path}: missing primary_metric (exactly one metric, "
                                "e.g. `primary_metric: acc`)")
            if not isinstance(raw["primary_metric"], str):
                raise TaskError(f"task file {path}: primary_metric must be one metric name, not "
                                f"{raw['primary_metric']!r}")
            base_cfg = self._base_config(raw, path, resolve=False)
            files = data.get("files") or {}
            return TaskSpec(
                name=name, lm_eval_task=raw.get("lm_eval_task") or base_cfg.get("task", name),
                primary_metric=raw["primary_metric"], chance=float(raw.get("chance", 0.0)),
                higher_is_better=bool(raw.get("higher_is_better", True)),
                output_type=base_cfg.get("output_type", "multiple_choice"),
                num_fewshot=int(raw.get("num_fewshot", 0)), version=str(raw.get("version", "1")),
                source=f"{kind}:{path}", data_file=next(iter(files.values()), None),
                description=str(raw.get("description", "")))
        # a plain lm-eval task YAML from a user folder
        if "task" not in raw:
            raise TaskError(f"task file {path}: neither an evalsuite spec (lm_eval_task/"
                            "primary_metric) nor an lm-eval task file (task: NAME)")
        cfg = load_lm_eval_config(path, resolve=False)
        extra = raw.get("evalsuite") or {}
        return self._spec_from_cfg(name, cfg, f"{kind}:{path}", extra)

    def _spec_from_lm_eval(self, name: str, yaml_path: str) -> TaskSpec:
        cfg = load_lm_eval_config(yaml_path, resolve=False)
        return self._spec_from_cfg(name, cfg, "lm-eval", {})

    @staticmethod
    def _spec_from_cfg(name: str, cfg: dict[str, Any], source: str, extra: dict[str, Any]) -> TaskSpec:
        metrics = [m.get("metric") for m in cfg.get("metric_list") or [] if isinstance(m, dict)]
        output_type = cfg.get("output_type", "generate_until")
        primary = extra.get("primary_metric") or (metrics[0] if metrics else
                                                  "word_perplexity" if output_type == "loglikelihood_rolling" else "acc")
        hib = True
        for m in cfg.get("metric_list") or []:
            if isinstance(m, dict) and m.get("metric") == primary:
                hib = bool(m.get("higher_is_better", True))
        version = (cfg.get("metadata") or {}).get("version", "0") if isinstance(cfg.get("metadata"), dict) else "0"
        return TaskSpec(name=name, lm_eval_task=cfg.get("task", name), primary_metric=str(primary),
                        chance=float(extra.get("chance", 0.0)), higher_is_better=hib,
                        output_type=output_type, version=str(version), source=source,
                        num_fewshot=int(extra.get("num_fewshot", cfg.get("num_fewshot") or 0)))

    def _base_config(self, raw: dict[str, Any], path: Path, *, resolve: bool = True) -> dict[str, Any]:
        if "lm_eval_config" in raw:
            cfg = dict(raw["lm_eval_config"])
            cfg.setdefault("task", path.stem)
            return cfg
        index = lm_eval_task_index()
        task = raw["lm_eval_task"]
        if task not in index:
            raise TaskError(f"task file {path}: lm_eval_task {task!r} is not an lm-eval task "
                            f"(lm-eval {_lm_eval_version()}); fix the name")
        return load_lm_eval_config(index[task], resolve=resolve)

    # -- building lm-eval task objects
    def build(self, name: str):
        """An lm-eval ConfigurableTask for ``name``, reading local data when a data folder is set."""
        from lm_eval.api.task import ConfigurableTask

        spec = self.get(name)
        kind_path = self._task_files().get(name)
        if kind_path is None:
            cfg = load_lm_eval_config(lm_eval_task_index()[spec.lm_eval_task])
        else:
            kind, path = kind_path
            raw = _read_yaml(path)
            if "lm_eval_task" in raw or "lm_eval_config" in raw:
                cfg = self._base_config(raw, path)
                data = raw.get("data") or {}
                if data.get("files") and self.data_dir is not None:
                    cfg = self._with_local_data(cfg, data, name)
                elif "lm_eval_config" in raw and data.get("files"):
                    raise TaskError(f"task {name!r} reads only local files: pass --data-dir (or set "
                                    "EVALSUITE_DATA_DIR) to a folder laid out like "
                                    "../shared/data/benchmarks")
            else:
                cfg = load_lm_eval_config(path)
        cfg["task"] = name
        cfg.setdefault("metadata", {})
        if isinstance(cfg["metadata"], dict):
            cfg["metadata"] = {**cfg["metadata"], "version": spec.version}
        return ConfigurableTask(config=cfg)

    def _with_local_data(self, cfg: dict[str, Any], data: dict[str, Any], name: str) -> dict[str, Any]:
        from .datasets import load_split_files

        files = dict(data["files"])
        adapter = data.get("adapter", "jsonl")
        data_dir = self.data_dir
        # Read once here so a missing or empty file fails before any model loads.
        splits = load_split_files(data_dir, files, adapter)

        def custom_dataset(**_ignored):
            return dict(splits)

        cfg = dict(cfg)
        cfg["custom_dataset"] = custom_dataset
        cfg.pop("dataset_kwargs", None)
        for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
            if cfg.get(key) is not None and cfg[key] not in splits:
                cfg[key] = None
        if not any(cfg.get(k) for k in ("validation_split", "test_split")):
            raise TaskError(f"task {name!r}: local data gives splits {sorted(splits)} but lm-eval's "
                            "definition evaluates on none of them; fix data.files in the task YAML")
        return cfg


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def with_overrides(spec: TaskSpec, **kw) -> TaskSpec:
    return replace(spec, **kw)
