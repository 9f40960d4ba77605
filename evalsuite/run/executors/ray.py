"""Ray executor: each group (one checkpoint at one precision, all its tasks) is a Ray task.

Ray (https://docs.ray.io) schedules the groups over the cluster's workers; evalsuite adds no
scheduler of its own. What this module adds:

- each group task asks for ``num_cpus`` and ``num_gpus`` (one GPU per worker on a GPU cluster);
- a worker process keeps one :class:`~evalsuite.run.evaluate.GroupEvaluator` in a module-level slot,
  so its later groups reuse the built lm-eval tasks and swap new weights into the model it
  already holds (the same reuse the local executor gets);
- a worker that dies (killed, out of host memory, node lost) has its group retried by Ray on
  another worker, up to ``max_retries`` times; the driver receives each group's rows and
  per-sample frames once, from the attempt that finished, and is the only writer of the store.

Without an address a local Ray instance is started, bound to 127.0.0.1, with ``workers`` x
``num_cpus`` CPUs. Ray reads some settings only from the environment (token authentication,
usage statistics); they are set here, before ``ray.init``, with the user's values winning.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ...engine.patches import apply_run_tuning
from ...records import RunConfig
from ..evaluate import CellFailure, CellOutcome, GroupEvaluator
from ..plan import Cell, RunError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'evalsuite[ray]' (Ray 2.60.0)"


@dataclass(frozen=True)
class RayOptions:
    """How ``evalsuite run --executor ray`` uses Ray.

    Args:
        address: an existing cluster (``host:port`` of its head, ``auto``, or ``ray://host:port``);
            None starts a local instance on 127.0.0.1.
        workers: local instance only: how many groups run at once (its CPUs are
            ``workers * num_cpus``); None: one per CPU core.
        num_cpus: CPUs each group task asks for (and torch threads in the worker).
        num_gpus: GPUs each group task asks for (1 on a GPU cluster; fractions share a GPU).
        max_retries: times Ray re-runs a group whose worker process died.
        env_vars: environment for the worker processes (HF offline settings, caches...).
        trace_dir: diagnostics: each worker process appends ``<time> <pid> start|end <group>``
            lines to ``trace_dir/<pid>.log``, to see which process runs (or ran) what.
    """

    address: str | None = None
    workers: int | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_retries: int = 3
    env_vars: Mapping[str, str] = field(default_factory=dict)
    trace_dir: str | None = None


@dataclass
class GroupResult:
    """What a worker sends back for one group: its outcomes and where and when it ran."""
    outcomes: list
    worker: str
    started_at: float  # time.time() when the task began on the worker
    setup_s: float     # imports and task building this group paid (0 when the worker had them)


def import_ray():
    try:
        import ray
    except ImportError as e:
        raise RunError(f"--executor ray needs Ray, which is not installed here: {INSTALL_HINT}, "
                       "or run without --executor ray") from e
    return ray


# ---- the worker side ----------------------------------------------------------------------------

#: This worker process's evaluator (built tasks, last loaded model), kept between group tasks.
_WORKER: dict[str, Any] = {}


def evaluate_group_task(cells: Sequence[Cell], registry, config: RunConfig, run_id: str,
                        threads: int, trace_dir: str | None) -> GroupResult:
    """One group on a Ray worker (also callable in-process: it touches no Ray API)."""
    started = time.time()
    _trace(trace_dir, "start", cells[0].checkpoint.id)
    t0 = time.perf_counter()
    import lm_eval  # noqa: F401 - imported here so the first group's setup time shows it
    import torch

    torch.set_num_threads(max(1, threads))
    if _WORKER.get("run") != run_id:
        _WORKER.clear()
        apply_run_tuning(config.tuning, device=config.device)  # this worker process's own
        _WORKER.update(run=run_id, evaluator=GroupEvaluator(registry, config))
    evaluator: GroupEvaluator = _WORKER["evaluator"]
    evaluator.prepare(c.task.name for c in cells)
    setup = time.perf_counter() - t0
    outcomes = evaluator.evaluate(cells)
    _trace(trace_dir, "end", cells[0].checkpoint.id)
    return GroupResult(outcomes, f"{os.getpid()}@{socket.gethostname()}", started, setup)


def _trace(trace_dir: str | None, what: str, group: str) -> None:
    if trace_dir:
        with open(Path(trace_dir) / f"{os.getpid()}.log", "a") as fh:
            fh.write(f"{time.time():.3f} {os.getpid()} {what} {group}\n")


# ---- the driver side ----------------------------------------------------------------------------

class RayExecutor:
    """Submits groups as Ray tasks and hands their outcomes to the driver as they finish."""

    name = "ray"

    def __init__(self, options: RayOptions, registry, config: RunConfig, *,
                 say: Callable[[str], None]):
        self.ray = import_ray()
        self.options, self.config, self.say = options, config, say
        self._pending: dict[Any, Sequence[Cell]] = {}
        self._results: list[GroupResult] = []
        self._t0 = time.time()
        self._started_here = connect(self.ray, options)
        self.ready_s = time.time() - self._t0
        resources = self.ray.cluster_resources()
        where = ("started a local instance" if self._started_here
                 else f"connected to {options.address}")
        say(f"ray: {where} in {self.ready_s:.1f}s ({resources.get('CPU', 0):g} CPUs, "
            f"{resources.get('GPU', 0):g} GPUs); each group asks for {options.num_cpus:g} CPU"
            + (f" and {options.num_gpus:g} GPU" if options.num_gpus else ""))
        if resources.get("CPU", 0) < options.num_cpus or resources.get("GPU", 0) < options.num_gpus:
            self.close()
            raise RunError(f"the Ray cluster has {resources.get('CPU', 0):g} CPUs and "
                           f"{resources.get('GPU', 0):g} GPUs; a group needs {options.num_cpus:g} "
                           f"CPUs and {options.num_gpus:g} GPUs. Lower --worker-cpus/--worker-gpus "
                           "or add nodes")
        self._registry = self.ray.put(registry)
        self._config = self.ray.put(config)
        self._run_id = uuid.uuid4().hex
        self._task = self.ray.remote(
            num_cpus=options.num_cpus, num_gpus=options.num_gpus,
            max_retries=options.max_retries,
            max_calls=0,  # keep the worker (and its cached model) between groups, GPU ones too
        )(evaluate_group_task)

    def has_capacity(self) -> bool:
        return True  # Ray queues the groups until a worker is free

    def submit(self, cells: Sequence[Cell], on_result) -> Any:
        ref = self._task.options(name=f"evalsuite {cells[0].checkpoint.id}").remote(
            list(cells), self._registry, self._config, self._run_id,
            max(1, int(self.options.num_cpus)), self.options.trace_dir)
        self._pending[ref] = cells
        return ref

    def next_finished(self) -> tuple[Any, list[CellOutcome | CellFailure]]:
        ray = self.ray
        (ref,), _ = ray.wait(list(self._pending), num_returns=1)
        cells = self._pending.pop(ref)
        ck = cells[0].checkpoint.id
        try:
            result: GroupResult = ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if _is_fatal(cause):
                raise cause from None  # a setting no checkpoint can run with: stop, as locally
            err = f"{type(cause or e).__name__}: {cause or e}"
            return ref, [CellFailure(ck, err, f"group {ck} failed on a Ray worker: {err}")]
        except ray.exceptions.RayError as e:  # worker or node died on every attempt
            err = (f"the Ray worker died on each of {self.options.max_retries + 1} attempts "
                   f"({type(e).__name__}); rerun to retry: finished cells are kept")
            return ref, [CellFailure(ck, err, f"group {ck} failed: {err}")]
        self._results.append(result)
        return ref, list(result.outcomes)

    def stats(self) -> dict[str, Any]:
        """Timings of the fixed costs and where the groups ran."""
        out: dict[str, Any] = {"executor": self.name, "address": self.options.address or "local",
                               "ready_s": round(self.ready_s, 3)}
        if self._results:
            first = min(r.started_at for r in self._results)
            out["startup_s"] = round(first - self._t0, 3)
            setups = [r.setup_s for r in self._results]
            out["worker_setup_s"] = round(max(setups), 3)
            by_worker: dict[str, int] = {}
            for r in self._results:
                by_worker[r.worker] = by_worker.get(r.worker, 0) + 1
            out["groups_by_worker"] = by_worker
        return out

    def close(self) -> None:
        for ref in list(self._pending):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        self._pending.clear()
        if self.ray.is_initialized():
            self.ray.shutdown()  # stops a local instance; only disconnects from a cluster


def _is_fatal(cause) -> bool:
    from ...tasks.adapters import DataError
    from ...tasks.registry import TaskError
    from ...store import StoreError

    return isinstance(cause, (RunError, TaskError, DataError, StoreError))


def connect(ray, options: RayOptions) -> bool:
    """``ray.init`` for the options; True when a local instance was started."""
    runtime_env = {"env_vars": worker_env(options.env_vars)}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine
    if options.address is None:
        n = options.workers or os.cpu_count() or 1
        try:
            ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                     num_cpus=max(1, int(round(n * options.num_cpus))),
                     runtime_env=runtime_env, logging_level=logging.WARNING,
                     configure_logging=True)
        except Exception as e:  # noqa: BLE001 - shown to the user with the fix
            raise RunError(f"could not start a local Ray instance ({type(e).__name__}: {e}); "
                           "check `ray status` and free disk space in /tmp, or pass --address "
                           "of a running cluster") from e
        return True
    address = options.address
    check_reachable(address)
    _use_token_if_available()
    try:
        ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING,
                 configure_logging=True)
    except Exception as e:  # noqa: BLE001 - shown to the user with the fix
        raise RunError(
            f"could not connect to the Ray cluster at {address} ({type(e).__name__}: {e}). Check "
            f"that `ray status --address {address}` works from this machine, that this Ray "
            "version matches the cluster's, and, if the cluster uses token authentication, that "
            "RAY_AUTH_TOKEN (or ~/.ray/auth_token) holds its token; or drop --address to start "
            "a local instance") from e
    return False


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, naming the address, when nothing listens there (``ray.init`` retries for
    minutes). Only plain ``host:port`` addresses are checked."""
    if address in ("auto", "local") or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        port_n = int(port)
    except ValueError as e:
        raise RunError(f"--address {address!r}: expected HOST:PORT of the Ray head (e.g. "
                       "127.0.0.1:6379), auto, or ray://HOST:10001") from e
    try:
        with socket.create_connection((host.strip("[]"), port_n), timeout=timeout_s):
            pass
    except OSError as e:
        raise RunError(
            f"no Ray cluster reachable at {address} ({e.strerror or e}). Start one with "
            f"`ray start --head --port {port_n}` on that machine (then pass --address "
            f"HOST:{port_n}), check the host, port and firewall, or drop --address to start a "
            "local Ray instance") from e


def _use_token_if_available() -> None:
    """Send this machine's Ray token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)
    when RAY_AUTH_MODE is unset. Ray does so itself only for a cluster it finds (address auto),
    yet `ray start` enables token authentication when a token exists, so a cluster named by its
    address may need it; a cluster without authentication ignores it (checked with Ray 2.60).
    Ray's own helper is used because the mode must also reach its already-loaded C++ config."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available)
    except ImportError:  # another Ray version: RAY_AUTH_MODE=token in the environment still works
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def worker_env(env_vars: Mapping[str, str]) -> dict[str, str]:
    """The worker processes' environment: the given variables, and evalsuite's source folder
    first on PYTHONPATH (harmless where the package is installed, needed where it is not)."""
    env = dict(env_vars)
    source_root = str(Path(__file__).resolve().parents[3])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if source_root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([source_root, *paths])
    return env
