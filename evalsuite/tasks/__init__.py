"""Tasks: the registry (bundled ``tasks/*.yaml``, user YAML folders, any lm-eval task by name)
and the data adapters that turn local benchmark files into the records lm-eval reads."""

from .adapters import DataError
from .registry import TaskError, TaskRegistry

__all__ = ["DataError", "TaskError", "TaskRegistry"]
