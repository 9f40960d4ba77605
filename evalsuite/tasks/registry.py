"""Task registry: bundled ``tasks/*.yaml``, user YAML folders and any lm-eval task by name.

A bundled task is a short evalsuite YAML that names the lm-eval task it wraps, its one primary
metric and chance level, and where its items live in a local data folder::

    lm_eval_task: arc_easy        # lm-eval's own definition: prompts, choices, metrics
    primary_metric: acc
    chance: 0.25
    version: "1"
    data:
      adapter: jsonl              # evalsuite.tasks.adapters.ADAPTERS
      files: {test: arc/arc_easy_test.jsonl}

Only the data source changes (lm-eval's ``custom_dataset`` hook), so the numbers are lm-eval's.
Without a data folder the task downloads lm-eval's usual hub dataset. A user folder
(``--include-path``) may also hold plain lm-eval task YAMLs, optionally with an ``evalsuite:``
block (``primary_metric``, ``chance``, ``num_fewshot``) that evalsuite reads and lm-eval never sees.

Names. lm-eval's built-in names come from lm-eval's public ``TaskManager().task_index``. Building
it reads ~14,700 YAML files (~12 s), so it is built once, on the first name that is not bundled,
and cached on disk per lm-eval version and install path (``$XDG_CACHE_HOME/evalsuite``; a
read-only home only costs the rebuild). Listing bundled tasks reads the cache, never lm-eval's
modules. Tasks are built with ``TaskManager(include_path=<the task's folder>,
include_defaults=False).load(...)``, which indexes one folder (milliseconds).

Code. ``!function`` runs Python named by a YAML file. It is honoured in files under the bundled
``tasks/`` folder, the ``--include-path`` folders and lm-eval's own task folder (package code),
including through ``include:`` chains; a chain that reaches a file elsewhere holding
``!function`` is refused before any of it is loaded. Python-class lm-eval tasks (``class:``) are
refused with the reason: their requests and metrics are code, not a config evalsuite can read.

Data. With a data folder, :meth:`TaskRegistry.build` checks every evaluation and few-shot record
against the task's own ``doc_to_text``/``doc_to_target``/``doc_to_choice`` (and, for multiple
choice, that the gold index is one of the choices). A bad record is an error naming its file,
line and field, or, with ``skip_bad_items=True``, dropped, logged and counted.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from .adapters import BadRecord, DataError, SplitRecords, describe_bad, read_split_files
from ..records import TaskSpec
from .sources import FAMILIES, GENERIC_BUILDERS, LocalSource, match_source

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parents[2] / "tasks"

_SPEC_KEYS = {"lm_eval_task", "lm_eval_config", "primary_metric", "chance", "version",
              "description", "data", "higher_is_better", "num_fewshot"}
_DATA_KEYS = {"adapter", "files"}
_EVALSUITE_KEYS = {"primary_metric", "chance", "num_fewshot"}  # the block in a user lm-eval YAML
_SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")
_MAX_INCLUDE_DEPTH = 16
_PROBE_ITEMS = 25  # records tried one by one when lm-eval cannot build a task on the whole data
_INDEX_FORMAT = 2  # 2: dataset_path, dataset_name and n_choices in each task summary


class TaskError(RuntimeError):
    """An unknown task or a malformed task file."""


# ---- reading task YAML without running it --------------------------------------------------

@dataclass(frozen=True)
class FunctionRef:
    """A ``!function module.name`` tag as read from ``base_dir/<file>``, not yet imported."""

    spec: str
    base_dir: Path

    def __str__(self) -> str:
        return f"!function {self.spec}"


class _LenientLoader(yaml.SafeLoader):
    """SafeLoader that keeps ``!function`` as a :class:`FunctionRef` (lm-eval's own files)."""

    base_dir = Path(".")


def _construct_function(loader, node):
    return FunctionRef(loader.construct_scalar(node), loader.base_dir)


_LenientLoader.add_constructor("!function", _construct_function)


class _UniqueKeyLoader(_LenientLoader):
    """... that also rejects duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise TaskError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path, *, strict: bool = True) -> dict[str, Any]:
    """One YAML mapping; ``!function`` stays a FunctionRef; duplicate keys refused when strict."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TaskError(f"task file {path} is not UTF-8 text: re-save it as UTF-8") from e
    except OSError as e:
        raise TaskError(f"cannot read task file {path}: {e.strerror or e}") from e
    loader_cls = _UniqueKeyLoader if strict else _LenientLoader
    loader = loader_cls(text)
    loader.base_dir = path.parent
    try:
        data = loader.get_single_data()
    except TaskError as e:
        raise TaskError(f"malformed task file {path}: {e}; remove the repeated key") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise TaskError(f"malformed task file {path}:{where} {getattr(e, 'problem', e)}; fix the "
                        "YAML syntax") from e
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise TaskError(f"malformed task file {path}: expected a mapping of keys, got "
                        f"{type(data).__name__}")
    return data


_GROUP_LINE = re.compile(r"""^["']?group["']?\s*:""", re.M)


def _is_group_file(path: Path) -> bool:
    """An lm-eval group definition (top-level ``group:``, as lm-eval classifies files): it
    names other tasks and is not listed as one. Unreadable files count as tasks, so that
    :meth:`TaskRegistry.get` reports what is wrong with them."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if not _GROUP_LINE.search(text):
        return False
    try:
        data = _read_yaml(path, strict=False)
    except TaskError:
        return False
    return "group" in data and not {"class", "lm_eval_task", "lm_eval_config"} & set(data)


def _has_function(obj: Any) -> bool:
    if isinstance(obj, FunctionRef):
        return True
    if isinstance(obj, dict):
        return any(_has_function(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_function(v) for v in obj)
    return False


@dataclass
class _TaskChain:
    """A task YAML with its ``include:`` chain merged the way lm-eval merges it."""

    config: dict[str, Any]
    files: list[Path] = field(default_factory=list)       # resolved paths, the task file first
    code_files: list[Path] = field(default_factory=list)  # those holding ``!function``


def _read_task_chain(path: Path, lenient_root: Path | None = None) -> _TaskChain:
    """Merge ``path`` and its includes (included keys first, the including file's keys win;
    an included file's ``task_list`` is not inherited). No code runs. Files under
    ``lenient_root`` (lm-eval's own task folder) may repeat keys, as lm-eval allows."""
    chain = _TaskChain(config={})

    def load(p: Path, stack: list[Path]) -> dict[str, Any]:
        rp = p.expanduser().resolve()
        if rp in stack:
            raise TaskError(f"task file {stack[0]}: include cycle through {rp}")
        if len(stack) > _MAX_INCLUDE_DEPTH:
            raise TaskError(f"task file {stack[0]}: includes nest deeper than {_MAX_INCLUDE_DEPTH}")
        if not rp.is_file():
            if stack:
                raise TaskError(f"task file {stack[-1]} includes {p}, which does not exist; fix "
                                "the include: path (relative to the including file)")
            raise TaskError(f"task file {p} does not exist")
        strict = not (lenient_root is not None and rp.is_relative_to(lenient_root))
        raw = _read_yaml(rp, strict=strict)
        chain.files.append(rp)
        includes = raw.pop("include", None)
        if _has_function(raw):
            chain.code_files.append(rp)
        if includes is None:
            return raw
        merged: dict[str, Any] = {}
        for inc in includes if isinstance(includes, list) else [includes]:
            if not isinstance(inc, str):
                raise TaskError(f"task file {rp}: include: must name files, got {inc!r}")
            inc_path = Path(inc) if Path(inc).is_absolute() else rp.parent / inc
            sub = load(inc_path, stack + [rp])
            sub.pop("task_list", None)
            merged.update(sub)
        merged.update(raw)
        return merged

    chain.config = load(Path(path), [])
    return chain


# ---- lm-eval's built-in tasks: one index, cached on disk ------------------------------------

@functools.lru_cache(maxsize=None)
def _lm_eval_tasks_dir() -> Path:
    """lm-eval's task folder, found without importing lm-eval."""
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise TaskError("lm-eval is not installed: pip install 'lm-eval[hf]'")
    return (Path(list(spec.submodule_search_locations)[0]) / "tasks").resolve()


@functools.lru_cache(maxsize=None)
def _lm_eval_version() -> str:
    from ..versions import package_version

    found = package_version("lm_eval")
    if found == "absent":
        raise TaskError("lm-eval is not installed: pip install 'lm-eval[hf]'")
    return found


def _default_cache_dir() -> Path | None:
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no home directory at all
            return None
    return Path(base) / "evalsuite"


def _relative(path: Any, root: Path) -> str | None:
    if path is None:
        return None
    p = Path(str(path))
    try:
        return p.resolve().relative_to(root).as_posix()
    except ValueError:
        return None  # outside lm-eval's folder: never followed from the cache


def _summarise_entry(entry, root: Path) -> dict[str, Any]:
    """What listing and get() need from one TaskManager index entry, JSON-ready."""
    kind = entry.kind.name.lower()  # task, py_task, group, tag
    cfg = entry.cfg if isinstance(entry.cfg, dict) else {}
    out: dict[str, Any] = {"kind": kind, "path": _relative(entry.yaml_path, root)}
    if kind == "task":
        metrics = []
        for m in cfg.get("metric_list") or []:
            if isinstance(m, dict) and "metric" in m:
                metrics.append([str(m["metric"]), bool(m.get("higher_is_better", True))])
        meta = cfg.get("metadata")
        out.update(output_type=cfg.get("output_type"), metrics=metrics,
                   version=meta.get("version", "0") if isinstance(meta, dict) else "0",
                   num_fewshot=cfg.get("num_fewshot"), **_dataset_fields(cfg))
    elif kind == "py_task":
        out["class"] = str(cfg.get("class", "?")).removeprefix(str(root) + os.sep)
    elif kind == "group":
        members = cfg.get("task") if isinstance(cfg.get("task"), list) else []
        names = [m if isinstance(m, str) else (m.get("task") or m.get("group"))
                 for m in members if isinstance(m, (str, dict))]
        out.update(members=[str(n) for n in names[:5]], n_members=len(names))
    else:
        members = sorted(entry.tags or ())
        out.update(members=members[:5], n_members=len(members))
    return out


def _offline_failure(e: BaseException) -> bool:
    """Whether building a task failed because the hub could not be reached (offline mode, or
    no network): the cause chain holds an offline or connection error."""
    seen = 0
    while e is not None and seen < 20:
        name = type(e).__name__
        if "Offline" in name or "Connection" in name or "couldn't reach" in str(e).lower():
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def _dataset_fields(cfg: dict[str, Any]) -> dict[str, Any]:
    """The dataset id of a task config, and its number of choices where the choices are a
    fixed list (MMLU's ``["A", "B", "C", "D"]``): what the chance level is derived from."""
    choices = cfg.get("doc_to_choice")
    return {"dataset_path": cfg.get("dataset_path"), "dataset_name": cfg.get("dataset_name"),
            "n_choices": len(choices) if isinstance(choices, list) and choices else None}


def _build_builtin_entries(root: Path) -> dict[str, dict[str, Any]]:
    """Index every built-in task with lm-eval's public TaskManager (~12 s)."""
    from lm_eval.tasks import TaskManager

    log.info("indexing lm-eval's built-in tasks once (about 12 s); cached for later calls")
    return {name: _summarise_entry(entry, root) for name, entry in TaskManager().task_index.items()}


class _BuiltinIndex:
    """lm-eval's built-in names: kind, YAML path (inside lm-eval's folder) and a summary."""

    def __init__(self, root: Path, entries: dict[str, dict[str, Any]]):
        self.root = root
        self.entries = entries

    def get(self, name: str) -> dict[str, Any] | None:
        return self.entries.get(name)

    def names(self) -> list[str]:
        return list(self.entries)

    def path(self, name: str) -> Path:
        rel = self.entries[name].get("path")
        if rel is None:
            raise TaskError(f"lm-eval task {name!r} has no YAML file in {self.root}")
        return self.root / rel


def _index_cache_file(cache_dir: Path | None, version: str, root: Path) -> Path | None:
    if cache_dir is None:
        return None
    try:
        stamp = root.stat().st_mtime_ns  # a reinstall of the same version rewrites the folder
    except OSError:
        stamp = 0
    key = hashlib.sha256(f"{root}\0{stamp}".encode()).hexdigest()[:12]
    return cache_dir / f"lm_eval_index-v{_INDEX_FORMAT}-{version}-{key}.json"


def _read_index_cache(cache: Path, root: Path, version: str) -> dict[str, dict[str, Any]] | None:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and data.get("format") == _INDEX_FORMAT
            and data.get("root") == str(root) and data.get("lm_eval") == version
            and isinstance(data.get("entries"), dict)):
        return None
    entries = data["entries"]
    for entry in entries.values():  # a tampered cache must not point outside lm-eval's folder
        rel = entry.get("path") if isinstance(entry, dict) else ""
        if rel is not None and (not isinstance(rel, str) or rel.startswith("/")
                                or ".." in rel.split("/")):
            return None
    return entries


def _write_index_cache(cache: Path, root: Path, version: str, entries: dict) -> None:
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"format": _INDEX_FORMAT, "lm_eval": version, "root": str(root),
                                   "entries": entries}, default=str), encoding="utf-8")
        os.replace(tmp, cache)
    except OSError as e:  # read-only or full home: the next process rebuilds
        log.debug("cannot write the lm-eval task index cache %s: %s", cache, e)
        try:
            tmp.unlink()
        except OSError:
            pass


_INDEX_MEMO: dict[tuple[str, str, str], _BuiltinIndex] = {}  # per process: read the cache once


def _builtin_index(cache_dir: Path | None = None) -> _BuiltinIndex:
    root, version = _lm_eval_tasks_dir(), _lm_eval_version()
    cache = _index_cache_file(Path(cache_dir) if cache_dir else _default_cache_dir(), version, root)
    key = (str(cache), str(root), version)
    if key not in _INDEX_MEMO:
        entries = _read_index_cache(cache, root, version) if cache else None
        if entries is None:
            entries = _build_builtin_entries(root)
            if cache is not None:
                _write_index_cache(cache, root, version, entries)
        _INDEX_MEMO[key] = _BuiltinIndex(root, entries)
    return _INDEX_MEMO[key]


def lm_eval_task_index(cache_dir: Path | None = None) -> dict[str, str]:
    """Map each built-in lm-eval task name (YAML and Python-class tasks) -> its YAML path.

    Read from lm-eval's ``TaskManager().task_index`` once and cached on disk under
    ``cache_dir`` (default ``$XDG_CACHE_HOME/evalsuite``), keyed by lm-eval's version and
    install path.
    """
    index = _builtin_index(cache_dir)
    return {name: str(index.root / e["path"]) for name, e in index.entries.items()
            if e.get("kind") in ("task", "py_task") and e.get("path")}


def _import_function(ref: FunctionRef) -> Callable:
    """``module.name`` from ``module.py`` beside the YAML file, else an importable module."""
    import importlib
    import importlib.util

    module_name, _, attr = ref.spec.rpartition(".")
    if not module_name:
        raise TaskError(f"{ref} in {ref.base_dir}: expected module.function")
    file = ref.base_dir / f"{module_name.replace('.', '/')}.py"
    if file.is_file():
        unique = "evalsuite_task_code_" + hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(unique, file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError as e:
        raise TaskError(f"{ref} in {ref.base_dir}: {module_name} has no {attr!r}") from e


def _resolve_functions(obj: Any) -> Any:
    if isinstance(obj, FunctionRef):
        return _import_function(obj)
    if isinstance(obj, dict):
        return {k: _resolve_functions(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve_functions(v) for v in obj]
    return obj


def load_lm_eval_config(yaml_path: str | Path, *, resolve: bool = True) -> dict[str, Any]:
    """An lm-eval task YAML with its ``include:`` chain merged as lm-eval merges it.

    With ``resolve=False`` nothing runs: ``!function`` values stay :class:`FunctionRef`. With
    ``resolve=True`` they are imported (``module.py`` beside the file that names it, else an
    importable module), which runs that code: only call it on files you trust. Task objects
    are built by :meth:`TaskRegistry.build` through lm-eval's own loader, not with this.
    """
    cfg = _read_task_chain(Path(yaml_path), lenient_root=_lm_eval_tasks_dir()).config
    for key in ("tag", "group", "task_list"):
        cfg.pop(key, None)
    return _resolve_functions(cfg) if resolve else cfg


# ---- building lm-eval task objects -----------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _evalsuite_block_task_class():
    """lm-eval's ConfigurableTask for a YAML whose merged config holds an ``evalsuite:`` block.

    lm-eval's TaskConfig rejects unknown keys, and a loaded YAML cannot lose a key through
    overrides; lm-eval's own ``class:`` hook hands this class the merged config instead, and it
    drops the block (and the hook) before lm-eval's TaskConfig sees them. Created on first use
    so that importing the registry never imports lm-eval.
    """
    from lm_eval.api.task import ConfigurableTask

    class EvalsuiteBlockTask(ConfigurableTask):
        def __init__(self, config: dict[str, Any] | None = None):
            config = {k: v for k, v in (config or {}).items() if k not in ("class", "evalsuite")}
            super().__init__(config=config)

    return EvalsuiteBlockTask


def _load_lm_eval_task(name: str, *, yaml_path: Path | None = None, base_name: str | None = None,
                       config: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
                       strip_evalsuite: bool = False):
    """Build one task with lm-eval's public TaskManager and rename it ``name``.

    A YAML task is loaded from a TaskManager that indexes only its folder, as the single member
    of a one-off group: lm-eval applies a group member's keys over the task's YAML config before
    building it (``overrides``), which is how a local data source is put in. A complete config
    dict (``config``) is loaded as it is.
    """
    from lm_eval.tasks import TaskManager

    overrides = dict(overrides or {})
    if config is not None:
        loaded = TaskManager(include_defaults=False).load({**config, **overrides})
    elif yaml_path.suffix != ".yaml":  # lm-eval indexes *.yaml only; a path loads as it is
        if strip_evalsuite or set(overrides) - {"metadata"}:
            raise TaskError(f"task file {yaml_path}: lm-eval only indexes files named *.yaml, and "
                            "this one needs evalsuite's changes (an evalsuite: block or local "
                            f"data): rename it to {yaml_path.stem}.yaml")
        loaded = TaskManager(include_defaults=False).load(str(yaml_path))
    else:
        manager = TaskManager(include_path=str(yaml_path.parent), include_defaults=False)
        entry = manager.task_index.get(base_name)
        if entry is None or entry.yaml_path is None or Path(entry.yaml_path).resolve() != yaml_path.resolve():
            other = f" ({entry.yaml_path} defines it too)" if entry is not None else ""
            raise TaskError(f"task file {yaml_path}: lm-eval does not load task {base_name!r} from "
                            f"this file{other}; give each task file its own task: name")
        item: dict[str, Any] = {"task": base_name, **overrides}
        if strip_evalsuite:
            item["class"] = _evalsuite_block_task_class()
        loaded = manager.load({"group": f"evalsuite-build-{name}", "task": [item]})
    tasks = list(loaded["tasks"].values())
    if len(tasks) != 1:
        raise TaskError(f"task {name!r}: lm-eval built {len(tasks)} tasks, expected one")
    task = tasks[0]
    task.set_config(key="task", value=name)
    return task


def _template_fields(template: Any, features: list[str]) -> list[str]:
    """The record fields a doc_to_* template reads (best effort, for error messages)."""
    if isinstance(template, str):
        if template in features:
            return [template]
        try:
            from jinja2 import meta
            from lm_eval.utils import env

            names = meta.find_undeclared_variables(env.parse(template))
        except Exception:  # noqa: BLE001 - only for the message
            return []
        return [f for f in features if f in names]
    return []


def _check_doc(task, doc: dict[str, Any]) -> tuple[str | None, str] | None:
    """(field, problem) when lm-eval cannot render or score ``doc`` correctly, else None."""
    cfg = task.config
    features = list(doc.keys()) if hasattr(doc, "keys") else []

    def where(attr: str) -> str | None:
        fields = _template_fields(getattr(cfg, attr, None), features)
        return ", ".join(fields) if fields else None

    def failure(attr: str, e: Exception):
        return where(attr), f"{attr} fails: {type(e).__name__}: {e}"

    try:
        text = task.doc_to_text(doc)
    except Exception as e:  # noqa: BLE001 - any template or function error is this record's
        return failure("doc_to_text", e)
    try:
        target = task.doc_to_target(doc)
    except Exception as e:  # noqa: BLE001
        return failure("doc_to_target", e)
    is_mc = task.OUTPUT_TYPE == "multiple_choice"
    choices = None
    if cfg.doc_to_choice is not None or is_mc:
        try:
            choices = task.doc_to_choice(doc)
        except Exception as e:  # noqa: BLE001
            return failure("doc_to_choice", e)
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            return where("doc_to_choice"), f"doc_to_choice gives {choices!r:.80}, not a list of strings"
    if text is None:
        return where("doc_to_text"), "doc_to_text gives nothing"
    if not is_mc:
        if target is None:
            return where("doc_to_target"), "doc_to_target gives nothing"
        return None
    # multiple choice: the gold answer must be one of the choices, as lm-eval scores it
    attr, gold = ("doc_to_text", text) if isinstance(text, int) else ("doc_to_target", target)
    golds = gold if isinstance(gold, list) else [gold]
    for g in golds:
        if isinstance(g, str):
            if g not in choices:
                return where(attr), f"{attr} gives {g!r:.60}, which is not one of the {len(choices)} choices"
        elif isinstance(g, int):
            if not 0 <= g < len(choices):
                return where(attr), (f"{attr} gives {g}, outside the {len(choices)} choices "
                                     f"(0..{len(choices) - 1})")
        else:
            return where(attr), f"{attr} gives {g!r:.60}, neither a choice index nor a choice"
    return None


def _source_order(bad: BadRecord) -> tuple[str, int]:
    src = bad.source
    return (str(src.path), src.line) if hasattr(src, "line") else (str(src), 0)


def _fewshot_split(task) -> str | None:
    """The split lm-eval draws few-shot examples from (None: inline samples or none)."""
    fewshot_cfg = getattr(task, "fewshot_cfg", None)
    if fewshot_cfg is not None and getattr(fewshot_cfg, "split", None):
        return fewshot_cfg.split
    if fewshot_cfg is not None and getattr(fewshot_cfg, "samples", None) is not None:
        return None
    cfg = task.config
    if task.has_training_docs():
        return cfg.training_split
    if task.has_validation_docs():
        return cfg.validation_split
    return cfg.test_split


# ---- the registry ----------------------------------------------------------------------

class TaskRegistry:
    """Resolves task names to TaskSpecs and builds lm-eval task objects for them.

    Args:
        include_paths: user folders of task YAMLs (lm-eval task files, optionally with an
            ``evalsuite:`` block giving ``primary_metric`` and ``chance``, or evalsuite specs).
            Only bundled tasks, these folders and lm-eval's own folder may run code (``!function``).
        data_dir: local data folder laid out like ``../shared/data/benchmarks``; None uses
            lm-eval's hub datasets.
        skip_bad_items: drop records of local data that cannot be scored (logged as warnings with
            their file and line, counted by :meth:`skipped_items`) instead of refusing the data.
    """

    def __init__(self, *, include_paths: Iterable[str | Path] = (), data_dir: str | Path | None = None,
                 bundled_dir: Path = BUNDLED_DIR, skip_bad_items: bool = False):
        self.include_paths = [Path(p) for p in include_paths]
        self.data_dir = Path(data_dir) if data_dir else None
        self.bundled_dir = Path(bundled_dir)
        self.skip_bad_items = bool(skip_bad_items)
        for p in self.include_paths:
            if not p.is_dir():
                raise TaskError(f"--include-path {p} is not a folder: pass a folder of task YAMLs")
        if self.data_dir is not None and not self.data_dir.is_dir():
            raise TaskError(f"data folder {self.data_dir} does not exist: pass --data-dir with a "
                            "folder laid out like ../shared/data/benchmarks, or omit it to use "
                            "lm-eval's hub datasets")
        self._files: dict[str, tuple[str, Path]] | None = None
        self._sources: list[LocalSource] | None = None
        self._skipped: dict[str, list[BadRecord]] = {}

    # -- discovery
    def _task_files(self) -> dict[str, tuple[str, Path]]:
        if self._files is None:
            files: dict[str, tuple[str, Path]] = {}
            for kind, folder in [("bundled", self.bundled_dir)] + [("user", p) for p in self.include_paths]:
                if folder.is_dir():
                    for path in sorted(folder.glob("*.y*ml")):
                        if not _is_group_file(path):
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
        index = _builtin_index()
        entry = index.get(name)
        if entry is not None:
            return self._spec_from_builtin(name, entry)
        candidates = list(dict.fromkeys([*files, *index.names()]))  # a bundled name is also lm-eval's
        close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise TaskError(f"unknown task {name!r}: not bundled in {self.bundled_dir}, not in "
                        f"--include-path folders, not an lm-eval task.{hint} "
                        "List tasks with `evalsuite tasks`.")

    # -- local data for lm-eval's datasets
    def local_sources(self) -> list[LocalSource]:
        """The table of datasets a data folder can stand in for: :data:`sources.FAMILIES`, then
        each bundled task's ``data:`` keyed by the dataset of the lm-eval task it wraps."""
        if self._sources is None:
            derived = []
            for name, (kind, path) in sorted(self._task_files().items()):
                if kind != "bundled":
                    continue
                raw = _read_yaml(path)
                data = raw.get("data") or {}
                if "lm_eval_task" not in raw or not data.get("files"):
                    continue
                entry = _builtin_index().get(str(raw["lm_eval_task"])) or {}
                if entry.get("dataset_path") and entry["dataset_path"] not in GENERIC_BUILDERS:
                    derived.append(LocalSource(entry["dataset_path"], entry.get("dataset_name"),
                                               data.get("adapter", "jsonl"), dict(data["files"]),
                                               f"tasks/{path.name}"))
            self._sources = [*FAMILIES, *derived]
        return self._sources

    def local_data(self, config: dict[str, Any]) -> dict[str, Any]:
        """``{adapter, files}`` for a task config whose dataset the data folder holds, else {}."""
        if self.data_dir is None or config.get("custom_dataset") is not None:
            return {}
        found = match_source(config.get("dataset_path"), config.get("dataset_name"),
                             self.local_sources(), self.data_dir)
        if found is None:
            return {}
        src, files = found
        return {"adapter": src.adapter, "files": files}

    def offline_names(self) -> list[str]:
        """Every task name (bundled, user, lm-eval's) whose documents the data folder holds."""
        if self.data_dir is None:
            return []
        out = set()
        for name, (_, path) in self._task_files().items():
            raw = _read_yaml(path, strict=False)
            files = (raw.get("data") or {}).get("files") if isinstance(raw, dict) else None
            if files and all((self.data_dir / rel).is_file() for rel in files.values()):
                out.add(name)
        index = _builtin_index()
        for name in index.names():
            entry = index.get(name) or {}
            if entry.get("kind") == "task" and entry.get("dataset_path") and match_source(
                    entry["dataset_path"], entry.get("dataset_name"), self.local_sources(),
                    self.data_dir):
                out.add(name)
        return sorted(out)

    def skipped_items(self, name: str) -> int:
        """How many records of ``name``'s local data the last :meth:`build` dropped as bad
        (0 unless ``skip_bad_items``)."""
        if name not in self._skipped:
            raise TaskError(f"task {name!r} has not been built by this registry: call build() first")
        return len(self._skipped[name])

    # -- specs
    def _trusted_code_roots(self) -> list[Path]:
        return [p.resolve() for p in [self.bundled_dir, *self.include_paths, _lm_eval_tasks_dir()]]

    def _task_chain(self, path: Path) -> _TaskChain:
        """The task file's merged include chain, refused if code comes from an untrusted file."""
        chain = _read_task_chain(path, lenient_root=_lm_eval_tasks_dir())
        roots = self._trusted_code_roots()
        for code_file in chain.code_files:
            if code_file == chain.files[0]:
                continue  # the task file itself was found in a bundled or --include-path folder
            if not any(code_file.is_relative_to(root) for root in roots):
                raise TaskError(
                    f"task file {path} includes {code_file}, which runs code (`!function`) but lies "
                    "outside the folders allowed to: the bundled tasks/ folder, the --include-path "
                    "folders and lm-eval's own task folder. Move it into an --include-path folder "
                    "(or pass its folder with --include-path) if you trust it.")
        return chain

    def _spec_from_file(self, name: str, kind: str, path: Path) -> TaskSpec:
        raw = _read_yaml(path)
        if "lm_eval_task" in raw or "lm_eval_config" in raw:
            unknown = set(raw) - _SPEC_KEYS
            if unknown:
                raise TaskError(f"task file {path}: unknown key(s) {sorted(unknown)}; allowed: "
                                f"{sorted(_SPEC_KEYS)}")
            data = raw.get("data") or {}
            if not isinstance(data, dict) or set(data) - _DATA_KEYS:
                raise TaskError(f"task file {path}: unknown key(s) under data: "
                                f"{sorted(set(data) - _DATA_KEYS) if isinstance(data, dict) else data!r}; "
                                f"allowed: {sorted(_DATA_KEYS)}")
            if "primary_metric" not in raw:
                raise TaskError(f"task file {path}: missing primary_metric (exactly one metric, "
                                "e.g. `primary_metric: acc`)")
            if not isinstance(raw["primary_metric"], str):
                raise TaskError(f"task file {path}: primary_metric must be one metric name, not "
                                f"{raw['primary_metric']!r}")
            if "lm_eval_config" in raw:
                base = self._inline_config(raw, path)
                lm_eval_task, output_type = raw.get("lm_eval_task") or base["task"], base.get("output_type")
            else:
                lm_eval_task = raw["lm_eval_task"]
                entry = self._builtin_task_entry(lm_eval_task, f"task file {path}: lm_eval_task")
                output_type = entry.get("output_type")
            files = data.get("files") or {}
            return TaskSpec(
                name=name, lm_eval_task=str(lm_eval_task), primary_metric=raw["primary_metric"],
                chance=float(raw.get("chance", 0.0)),
                higher_is_better=bool(raw.get("higher_is_better", True)),
                output_type=output_type or "generate_until",
                num_fewshot=int(raw.get("num_fewshot", 0)), version=str(raw.get("version", "1")),
                source=f"{kind}:{path}", data_file=next(iter(files.values()), None),
                description=str(raw.get("description", "")))
        # a plain lm-eval task YAML from a bundled or user folder
        cfg = self._task_chain(path).config
        if "task" not in cfg:
            raise TaskError(f"task file {path}: neither an evalsuite spec (lm_eval_task/"
                            "primary_metric) nor an lm-eval task file (task: NAME)")
        if "group" in cfg or not isinstance(cfg["task"], str):
            raise TaskError(f"task file {path} defines an lm-eval group (group: {cfg.get('group')}), "
                            "not a task: evalsuite scores single tasks, so name them one by one")
        if "class" in cfg:
            raise TaskError(f"task file {path} defines a Python-class task (class: {cfg['class']}): "
                            "its requests and metrics are code evalsuite cannot read; write it as a "
                            "YAML task (doc_to_text, doc_to_target, metric_list)")
        extra = cfg.get("evalsuite") or {}
        if not isinstance(extra, dict) or set(extra) - _EVALSUITE_KEYS:
            bad = sorted(set(extra) - _EVALSUITE_KEYS) if isinstance(extra, dict) else extra
            raise TaskError(f"task file {path}: unknown key(s) under evalsuite: {bad!r}; allowed: "
                            f"{sorted(_EVALSUITE_KEYS)}")
        meta = cfg.get("metadata")
        summary = {
            "output_type": cfg.get("output_type"),
            "metrics": [[str(m["metric"]), bool(m.get("higher_is_better", True))]
                        for m in cfg.get("metric_list") or [] if isinstance(m, dict) and "metric" in m],
            "version": meta.get("version", "0") if isinstance(meta, dict) else "0",
            "num_fewshot": cfg.get("num_fewshot"), **_dataset_fields(cfg)}
        return self._spec_from_summary(name, str(cfg["task"]), summary, f"{kind}:{path}", extra)

    @staticmethod
    def _inline_config(raw: dict[str, Any], path: Path) -> dict[str, Any]:
        cfg = raw["lm_eval_config"]
        if not isinstance(cfg, dict):
            raise TaskError(f"task file {path}: lm_eval_config must be a mapping of lm-eval task keys")
        if _has_function(cfg):
            raise TaskError(f"task file {path}: `!function` is not supported inside lm_eval_config; "
                            "put the lm-eval config in its own YAML file in an --include-path folder")
        cfg = dict(cfg)
        cfg.setdefault("task", path.stem)
        return cfg

    def _builtin_task_entry(self, task: str, what: str) -> dict[str, Any]:
        entry = _builtin_index().get(task)
        if entry is None:
            raise TaskError(f"{what} {task!r} is not an lm-eval task (lm-eval {_lm_eval_version()}); "
                            "fix the name")
        self._refuse_non_yaml(task, entry, what)
        return entry

    @staticmethod
    def _refuse_non_yaml(name: str, entry: dict[str, Any], what: str = "lm-eval task") -> None:
        kind = entry.get("kind")
        if kind == "py_task":
            raise TaskError(
                f"{what} {name!r} is a Python-class lm-eval task ({entry.get('class')}), not a YAML "
                "config: its requests and metrics are code (SQuAD v2, for one, mixes generation "
                "and log-likelihood requests), so evalsuite cannot give it one primary metric and "
                "chance level. Run it with lm-eval's own CLI, or write a YAML task for it in an "
                "--include-path folder.")
        if kind in ("group", "tag"):
            members = ", ".join(entry.get("members") or [])
            raise TaskError(f"{what} {name!r} is an lm-eval {kind} of {entry.get('n_members', 0)} "
                            f"tasks (e.g. {members}), not a task: evalsuite scores single tasks, "
                            "so name them one by one")
        if kind != "task":
            raise TaskError(f"{what} {name!r}: unknown lm-eval index entry {kind!r}")

    def _spec_from_builtin(self, name: str, entry: dict[str, Any]) -> TaskSpec:
        self._refuse_non_yaml(name, entry)
        return self._spec_from_summary(name, name, entry, "lm-eval", {})

    @staticmethod
    def _spec_from_summary(name: str, task: str, summary: dict[str, Any], source: str,
                           extra: dict[str, Any]) -> TaskSpec:
        metrics = summary.get("metrics") or []
        output_type = summary.get("output_type") or "generate_until"
        primary = extra.get("primary_metric") or (metrics[0][0] if metrics else
                                                  "word_perplexity" if output_type == "loglikelihood_rolling" else "acc")
        hib = next((h for m, h in metrics if m == primary), True)
        chance = extra.get("chance")
        if chance is None:  # from the task: 1 / number of choices where they are a fixed list
            n = summary.get("n_choices")
            chance = 1.0 / n if output_type == "multiple_choice" and n else 0.0
        return TaskSpec(name=name, lm_eval_task=task, primary_metric=str(primary),
                        chance=float(chance), higher_is_better=bool(hib),
                        output_type=output_type, version=str(summary.get("version", "0")),
                        source=source,
                        num_fewshot=int(extra.get("num_fewshot", summary.get("num_fewshot") or 0)))

    # -- building lm-eval task objects
    def build(self, name: str):
        """An lm-eval task object for ``name``, reading local data when a data folder is set.

        With local data every evaluation and few-shot record is checked first (see the module
        docstring); a bad record raises :class:`~evalsuite.tasks.adapters.DataError` naming its file,
        line and field, or is dropped and counted with ``skip_bad_items``.
        """
        spec = self.get(name)
        index = _builtin_index() if name not in self._task_files() else None
        data: dict[str, Any] = {}
        strip = False
        if index is not None:  # an lm-eval task by its own name
            yaml_path, config = index.path(spec.lm_eval_task), None
            base = _read_task_chain(yaml_path, lenient_root=index.root).config
            data = self.local_data(base)
        else:
            kind, path = self._task_files()[name]
            raw = _read_yaml(path)
            if "lm_eval_task" in raw or "lm_eval_config" in raw:
                data = raw.get("data") or {}
                if "lm_eval_config" in raw:
                    yaml_path, config = None, self._inline_config(raw, path)
                    base = config
                    if data.get("files") and self.data_dir is None:
                        raise TaskError(f"task {name!r} reads only local files: pass --data-dir (or "
                                        "set EVALSUITE_DATA_DIR) to a folder laid out like "
                                        "../shared/data/benchmarks")
                else:
                    yaml_path, config = _builtin_index().path(spec.lm_eval_task), None
                    base = _read_task_chain(yaml_path, lenient_root=_lm_eval_tasks_dir()).config
            else:
                yaml_path, config = path, None
                base = self._task_chain(path).config
                strip = "evalsuite" in base
                data = self.local_data(base)
        overrides: dict[str, Any] = {}
        meta = base.get("metadata")
        if not _has_function(meta):
            overrides["metadata"] = {**(meta if isinstance(meta, dict) else {}), "version": spec.version}

        def make(extra: dict[str, Any] | None = None):
            return _load_lm_eval_task(name, yaml_path=yaml_path, base_name=str(base.get("task")),
                                      config=config, overrides={**overrides, **(extra or {})},
                                      strip_evalsuite=strip)

        if data.get("files") and self.data_dir is not None:
            return self._build_on_local_data(name, base, data, make)
        self._skipped[name] = []
        try:
            return make()
        except Exception as e:
            if not _offline_failure(e):
                raise
            where = "/".join(str(x) for x in (base.get("dataset_path"), base.get("dataset_name")) if x)
            folder = (f"the data folder {self.data_dir} has no copy of it" if self.data_dir else
                      "no data folder was given")
            raise TaskError(f"task {name!r}: its dataset {where} is not in the Hugging Face cache "
                            f"and downloads are off (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE); {folder}. "
                            "Pass --data-dir with a folder laid out like ../shared/data/benchmarks "
                            "that holds it (`evalsuite tasks --data-dir DIR --offline` lists what "
                            "runs offline), or go online") from None

    def _build_on_local_data(self, name: str, base: dict[str, Any], data: dict[str, Any],
                             make: Callable[[dict[str, Any]], Any]):
        files = dict(data["files"])
        records = read_split_files(self.data_dir, files, data.get("adapter", "jsonl"))
        split_overrides = {key: None for key in _SPLIT_KEYS
                           if base.get(key) is not None and base[key] not in records}
        effective = {**base, **split_overrides}
        eval_split = effective.get("test_split") or effective.get("validation_split")
        if not eval_split:
            raise TaskError(f"task {name!r}: local data gives splits {sorted(records)} but lm-eval's "
                            "definition evaluates on none of them; fix data.files in the task YAML")
        # Read once here so a missing or bad file fails before any model loads.
        holder: dict[str, dict[str, Any]] = {}

        def custom_dataset(**_ignored):
            return dict(holder["splits"])

        def build_on(recs: dict[str, SplitRecords]):
            holder["splits"] = {split: r.to_dataset() for split, r in recs.items()}
            return make({"custom_dataset": custom_dataset, "dataset_kwargs": None, **split_overrides})

        bad = [b for r in records.values() for b in r.bad]  # records the adapter could not convert
        for split, r in records.items():
            if not r.rows:
                raise DataError(f"task {name!r}: no record of {r.path} can be read:\n{describe_bad(r.bad)}")
        try:
            task = build_on(records)
            failure = None
        except Exception as e:  # noqa: BLE001 - lm-eval renders the first record while building
            task, failure = self._probe(name, records, eval_split, build_on), e
            if task is None:
                raise TaskError(f"task {name!r}: lm-eval cannot build it on the local data "
                                f"({', '.join(str(r.path) for r in records.values())}); it fails on "
                                f"each of the first records, e.g. {records[eval_split].sources[0]}: "
                                f"{type(e).__name__}: {e}") from e
            holder["splits"] = {split: r.to_dataset() for split, r in records.items()}
            task.download(task.config.dataset_kwargs)  # the probe task re-reads all the records
        drop = self._find_bad_docs(task, records, eval_split, fresh=failure is not None)
        bad += [b for _, _, b in drop]
        if failure is not None and not drop:
            raise TaskError(f"task {name!r}: lm-eval cannot build it on the local data: "
                            f"{type(failure).__name__}: {failure}") from failure
        bad.sort(key=_source_order)
        if bad and not self.skip_bad_items:
            raise DataError(f"task {name!r}: {len(bad)} bad record(s) in the local data:\n"
                            f"{describe_bad(bad)}\nfix them (the data folder's PROVENANCE.md names "
                            "each file's source), or drop and count them with skip_bad_items "
                            "(--skip-bad-items)")
        for b in bad:
            log.warning("task %s: skipped bad record %s", name, b)
        self._skipped[name] = bad
        if drop:
            unmapped = [b for split, i, b in drop if i is None]
            if unmapped:
                raise DataError(f"task {name!r}: lm-eval's process_docs changes the number of "
                                "records, so bad records cannot be traced back to lines and "
                                f"skipped:\n{describe_bad(unmapped)}")
            by_split: dict[str, set[int]] = {}
            for split, i, _ in drop:
                by_split.setdefault(split, set()).add(i)
            kept = {split: r.without(by_split.get(split, ())) for split, r in records.items()}
            if not kept[eval_split].rows:
                raise DataError(f"task {name!r}: every record of {records[eval_split].path} is bad")
            try:
                task = build_on(kept)
            except Exception as e:  # noqa: BLE001
                raise TaskError(f"task {name!r}: lm-eval cannot build it on the local data left "
                                f"after dropping {len(bad)} bad record(s): {type(e).__name__}: {e}") from e
        return task

    # -- exporting as plain lm-eval YAML
    def export_lm_eval_yaml(self, name: str, out_dir: str | Path, *, task_name: str | None = None,
                            max_items: int | None = None,
                            overrides: Mapping[str, Any] | None = None) -> Path:
        """Write task ``name`` as a plain lm-eval task YAML that stock lm-eval runs as it is
        (``lm_eval --include_path OUT_DIR --tasks TASK_NAME``); returns the YAML's path.

        The YAML ``include:``s lm-eval's own definition of the wrapped task (prompts, choices,
        metrics, ``!function`` helpers resolve beside it, as in lm-eval) and replaces only what
        :meth:`build` replaces: the task's name, its version, and, with a data folder, the data
        source. The local records are converted by the same adapters and written once to
        ``OUT_DIR/data/<task_name>.<split>.jsonl`` (lm-eval reads them with the ``json``
        builder); splits the local data lacks are switched off as in :meth:`build`. The task is
        built first, so a bad record fails here as it would in a run. ``task_name`` (default
        ``name``) must differ from the lm-eval task's own name if both are to be indexed at
        once; ``max_items`` keeps the first records of the evaluation split; ``overrides`` are
        further lm-eval keys (``num_fewshot``, ``generation_kwargs``...).
        """
        spec = self.get(name)
        task_name = task_name or name
        out = Path(out_dir)
        files = self._task_files()
        data: dict[str, Any] = {}
        base_path: Path | None = None
        if name in files:
            raw = _read_yaml(files[name][1])
            if "evalsuite" in raw:
                raise TaskError(f"task {name!r} carries an evalsuite: block, which stock lm-eval "
                                "would refuse; export the lm-eval file it wraps instead")
            data = (raw.get("data") or {}) if ("lm_eval_task" in raw or "lm_eval_config" in raw) \
                else {}
            if "lm_eval_config" in raw:  # a whole config, no code: written out as it is
                base = self._inline_config(raw, files[name][1])
            elif "lm_eval_task" in raw:
                base_path = _builtin_index().path(spec.lm_eval_task)
            else:
                base_path = files[name][1]
        else:
            base_path = _builtin_index().path(spec.lm_eval_task)
        if base_path is not None:
            base = _read_task_chain(base_path, lenient_root=_lm_eval_tasks_dir()).config
            doc: dict[str, Any] = {"include": str(Path(base_path).resolve()), "task": task_name}
            data = data or self.local_data(base)
        else:
            doc = {**base, "task": task_name}
        meta = base.get("metadata")
        if not _has_function(meta):
            doc["metadata"] = {**(meta if isinstance(meta, dict) else {}), "version": spec.version}
        if data.get("files") and self.data_dir is not None:
            self.build(name)  # every record checked, as a run would
            if self._skipped.get(name):
                raise DataError(f"task {name!r}: {len(self._skipped[name])} bad record(s) in the "
                                "local data; fix them before exporting (an export never drops "
                                "records silently)")
            records = read_split_files(self.data_dir, dict(data["files"]), data.get("adapter", "jsonl"))
            eval_split = next((base[k] for k in ("test_split", "validation_split")
                               if base.get(k) in records), None)
            (out / "data").mkdir(parents=True, exist_ok=True)
            data_files = {}
            for split, recs in sorted(records.items()):
                rows = recs.rows[:max_items] if (split == eval_split and max_items is not None) \
                    else recs.rows
                path = (out / "data" / f"{task_name}.{split}.jsonl").resolve()
                with open(path, "w", encoding="utf-8") as fh:
                    for row in rows:
                        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                data_files[split] = str(path)
            doc.update({"dataset_path": "json", "dataset_name": None,
                        "dataset_kwargs": {"data_files": data_files}})
            doc.update({k: None for k in _SPLIT_KEYS
                        if base.get(k) is not None and base[k] not in records})
        elif max_items is not None:
            raise TaskError(f"task {name!r}: max_items needs local data (a data folder and a task "
                            "with data.files); lm-eval's own --limit caps hub data")
        doc.update(dict(overrides or {}))
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{task_name}.yaml"
        header = (f"# lm-eval task {task_name}: evalsuite's task {name} (lm-eval's "
                  f"{spec.lm_eval_task}), exported by TaskRegistry.export_lm_eval_yaml.\n")
        path.write_text(header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True),
                        encoding="utf-8")
        return path

    @staticmethod
    def _probe(name: str, records: dict[str, SplitRecords], eval_split: str, build_on):
        """A task built on one evaluation record at a time, for the first that builds."""
        rows = records[eval_split]
        for i in range(min(_PROBE_ITEMS, len(rows.rows))):
            one = rows.without(j for j in range(len(rows.rows)) if j != i)
            try:
                return build_on({**records, eval_split: one})
            except Exception:  # noqa: BLE001 - this record is bad too; try the next
                continue
        return None

    @staticmethod
    def _find_bad_docs(task, records: dict[str, SplitRecords], eval_split: str, *,
                       fresh: bool) -> list[tuple[str, int | None, BadRecord]]:
        """(split, record index or None when unmapped, problem) for every bad eval/few-shot doc.

        Renders every record with the task's own methods (lm-eval compiles a Jinja template per
        call unless the run's template cache is on: :mod:`evalsuite.engine.patches`).
        """
        eval_docs = task.eval_docs if fresh else getattr(task, "task_docs", None) or task.eval_docs
        checks = [(eval_split, eval_docs)]
        fewshot = _fewshot_split(task)
        if fewshot and fewshot != eval_split and fewshot in records:
            docs = task.fewshot_docs()
            if docs is not None:
                checks.append((fewshot, docs))
        out = []
        for split, docs in checks:
            split_records = records[split]
            docs = list(docs)
            mapped = len(docs) == len(split_records.rows)
            for i, doc in enumerate(docs):
                problem = _check_doc(task, doc)
                if problem is None:
                    continue
                source = (split_records.sources[i] if mapped else
                          f"{split_records.path}: item {i + 1} of split {split!r} after lm-eval's "
                          "process_docs")
                out.append((split, i if mapped else None, BadRecord(source, *problem)))
        return out
