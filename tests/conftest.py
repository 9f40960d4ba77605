"""Shared test fixtures. Tests run offline on CPU; real data is read in place from ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing may reach the Hugging Face hub from tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_UPDATE_DOWNLOAD_COUNTS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EVALSUITE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_data_path(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (expected ../shared/data beside "
                    "the repo; set EVALSUITE_SHARED_DATA to point elsewhere)")
    return path


def cli_in(cwd: Path, *args: str) -> int:
    """``evalsuite <args>`` run in-process from ``cwd`` (defaults such as results/ resolve there)."""
    from evalsuite.cli import main

    here = os.getcwd()
    os.chdir(cwd)
    try:
        return main(list(args))
    finally:
        os.chdir(here)


@pytest.fixture
def shared_data():
    return shared_data_path


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: on shared cores 2-thread torch waits on its busy sibling
    (../shared/NOTES.md). Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
