"""Executors: where a run's groups are scored. Each takes groups from the driver and hands back
their outcomes; only the driver writes the store.

``local`` (:class:`.local.LocalExecutor`) scores in the driver's process, one group at a time;
``ray`` (:class:`.ray.RayExecutor`) scores on a Ray cluster and is imported only when asked for,
so Ray is never needed to plan or run locally. A new executor implements :class:`Executor`.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence


class Executor(Protocol):
    """What the driver needs of an executor (see ``driver.Driver.drive``)."""

    name: str

    def has_capacity(self) -> bool:
        """Whether another group may be submitted now."""

    def submit(self, cells: Sequence[Any], on_result: Callable[[Any], None]) -> Any:
        """Start scoring one group's cells; returns a handle. Outcomes may go to ``on_result``
        as they finish (local) or come back from :meth:`next_finished` (Ray)."""

    def next_finished(self) -> tuple[Any, list]:
        """Block until a submitted group finishes: its handle and the outcomes not yet given
        to ``on_result``."""

    def stats(self) -> dict[str, Any]:
        """What the run report says about the executor (name, workers, timings)."""

    def close(self) -> None:
        """Release workers and connections."""


__all__ = ["Executor"]
