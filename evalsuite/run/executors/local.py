"""The default executor: groups evaluated one after another in the driver's process."""

from __future__ import annotations

from typing import Any, Sequence

from ...records import RunConfig
from ..evaluate import GroupEvaluator
from ..keys import TaskFingerprint
from ..plan import Cell

__all__ = ["LocalExecutor"]


class LocalExecutor:
    """Groups evaluated one after another in this process (the default executor)."""

    name = "local"

    def __init__(self, registry, config: RunConfig, todo: Sequence[Cell],
                 built: dict[str, Any] | None = None,
                 fingerprints: dict[str, TaskFingerprint] | None = None):
        self.evaluator = GroupEvaluator(registry, config, built, fingerprints)
        # every task is built before any checkpoint loads: a data error stops the run first
        self.evaluator.prepare(c.task.name for c in todo)
        self._done: list[int] = []
        self._next = 0

    def has_capacity(self) -> bool:
        return not self._done

    def submit(self, cells: Sequence[Cell], on_result) -> int:
        self.evaluator.evaluate(cells, on_result)  # written as each cell finishes
        self._next += 1
        self._done.append(self._next)
        return self._next

    def next_finished(self) -> tuple[int, list]:
        return self._done.pop(0), []  # outcomes already went to on_result

    def stats(self) -> dict[str, Any]:
        return {"executor": self.name}

    def close(self) -> None:
        pass
