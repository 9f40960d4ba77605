"""Every process-wide side effect of a run, in one place, switched on by the runner.

Three speed-ups change how fast a series is scored, never a number (each is pinned by a test):

- :func:`tune_cpu_allocator`: glibc ``mallopt`` settings that keep scoring's temporaries in the
  heap (CPU, Linux only);
- :func:`cache_compiled_templates`: lm-eval compiles each Jinja prompt template once per
  process instead of once per document (the one patch of lm-eval's module globals: it replaces
  ``lm_eval.utils.apply_template``, pinned to lm-eval 0.4.13 by ``tests/test_engine_requests.py``);
- :func:`memoize_requests`: a task's requests and documents are built once per run, not once per
  checkpoint (instance attributes of that task object only).

:func:`apply_run_tuning` is what the runner calls at the start of a run (``RunConfig.tuning``;
``evalsuite run --no-tuning`` turns all three off, ``EVALSUITE_MALLOC_TUNING=0`` the allocator
alone). Nothing here runs on import, and no constructor calls it.

Why requests are memoized: lm-eval's ``evaluate`` rebuilds every request on each call: it
re-runs ``process_docs`` over the whole split and renders a Jinja template per document. For a
series that is the same work once per checkpoint. The prompt text does not depend on the model
(chat templates aside, which the runner does not use), so the built ``Instance`` objects can be
kept and handed back with their responses cleared. lm-eval's own ``cache_requests`` is not
used: it is keyed by task name and shots only, so a task read from another data folder would get
stale requests.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep freed memory in glibc's heap instead of unmapping it (CPU scoring, Linux only).

    Scoring allocates the same 1-16 MiB temporaries (hidden states, a chunk of logits) for every
    batch. glibc serves blocks of that size with ``mmap`` and unmaps them on ``free``, so every
    batch page-faults its memory in again: 1.5 to 3.8 s of system time per 4-checkpoint
    benchmark series, against 0.75 s with this setting (measured, ``benchmarks/bench_engine.py``
    scoring). Blocks up to 32 MiB now come from the heap, and the heap is trimmed only above
    1 GiB free. Peak memory is unchanged; memory freed late stays with the process. Set
    ``EVALSUITE_MALLOC_TUNING=0`` to leave the allocator alone. Returns whether it was applied.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if os.environ.get("EVALSUITE_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        ok = (libc.mallopt(m_mmap_threshold, 32 << 20) == 1
              and libc.mallopt(m_trim_threshold, 1 << 30) == 1
              and libc.mallopt(m_top_pad, 64 << 20) == 1)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return False
    _ALLOCATOR_TUNED = bool(ok)
    return _ALLOCATOR_TUNED



@dataclass(frozen=True)
class RunTuning:
    """What :func:`apply_run_tuning` switched on (reported with the run)."""

    allocator: bool
    template_cache: bool
    request_memo: bool


def apply_run_tuning(enabled: bool = True, *, device: str = "cpu") -> RunTuning:
    """Switch on the run's speed-ups (the allocator on CPU only); ``enabled=False`` leaves the
    process as it is and tells the runner not to memoize requests. Idempotent."""
    if not enabled:
        return RunTuning(allocator=False, template_cache=False, request_memo=False)
    allocator = tune_cpu_allocator() if device.startswith("cpu") else False
    cache_compiled_templates()
    return RunTuning(allocator=allocator, template_cache=True, request_memo=True)



def cache_compiled_templates() -> None:
    """Make lm-eval compile each Jinja prompt template once per process, not once per document.

    ``lm_eval.utils.apply_template`` calls ``env.from_string(template)`` for every document and
    field (``doc_to_text``, ``doc_to_target``, ``doc_to_choice``), and Jinja compiles the
    template to Python code each time: measured here, 2,457 compilations took 2.2 s of a 5.6 s
    checkpoint. The compiled template is a pure function of its source string and lm-eval's
    module-level environment, so it is cached by that string; the rendered text is unchanged.
    Idempotent.
    """
    import functools

    from lm_eval import utils

    if getattr(utils.apply_template, "_evalsuite_cached", False):
        return
    compile_template = functools.lru_cache(maxsize=4096)(utils.env.from_string)

    def apply_template(template: str, doc: dict) -> str:
        return compile_template(template).render(**doc)

    apply_template._evalsuite_cached = True  # type: ignore[attr-defined]
    apply_template.__doc__ = utils.apply_template.__doc__
    utils.apply_template = apply_template


def memoize_requests(task_obj: Any) -> Any:
    """Make ``task_obj`` build its requests, and read its documents, once per setting.

    ``build_all_requests`` is wrapped on the instance (keyed by limit, rank, shots and few-shot
    seed); ``test_docs``/``validation_docs`` (which lm-eval's ``eval_docs`` calls, re-running
    ``process_docs`` over the split each time) are cached on the instance. The class is not
    touched. Returns the same object.
    """
    original_build = task_obj.build_all_requests
    built: dict[str, list] = {}

    def build_all_requests(*args, **kwargs):
        if args or kwargs.get("apply_chat_template") or kwargs.get("samples") is not None:
            return original_build(*args, **kwargs)
        key = repr((kwargs.get("limit"), kwargs.get("rank"), kwargs.get("world_size"),
                    kwargs.get("system_instruction"), kwargs.get("fewshot_as_multiturn"),
                    task_obj.config.num_fewshot, getattr(task_obj, "fewshot_seed", None)))
        if key in built:
            instances = built[key]
            for inst in instances:
                inst.resps = []
                inst.filtered_resps = {}
            task_obj._instances = instances
            return None
        out = original_build(*args, **kwargs)
        built[key] = task_obj._instances
        return out

    task_obj.build_all_requests = build_all_requests
    for attr in ("test_docs", "validation_docs"):
        setattr(task_obj, attr, _once(getattr(task_obj, attr)))
    return task_obj


def _once(fn):
    """``fn()`` computed on the first call and returned from then on."""
    cache: list = []

    def wrapper():
        if not cache:
            cache.append(fn())
        return cache[0]

    wrapper.__doc__ = fn.__doc__
    return wrapper
