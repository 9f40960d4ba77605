"""One probe for installed package versions (rows, cell keys, leaderboard manifests)."""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version


@functools.lru_cache(maxsize=None)
def package_version(pkg: str) -> str:
    """The installed distribution's version, or ``"absent"`` when it is not installed."""
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "absent"
