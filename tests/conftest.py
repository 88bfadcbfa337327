"""Shared test setup: offline, quiet, and the path to the optional real data sets."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("JPREFS_NO_PROGRESS", "1")

REPO = Path(__file__).resolve().parents[1]
# ../shared/data next to the repository (the developers' and CI's layout); override with JPREFS_SHARED_DATA.
SHARED_DATA = Path(os.environ.get("JPREFS_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data():
    """Path to ../shared/data; tests using it skip when it is absent."""
    if not SHARED_DATA.exists():
        pytest.skip(f"real data sets not found at {SHARED_DATA}")
    return SHARED_DATA


def shared_file(rel: str) -> Path:
    p = SHARED_DATA / rel
    if not p.exists():
        pytest.skip(f"{p} not found (real data sets are optional)")
    return p


@pytest.fixture
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one thread is ~5-10x faster than two fighting
    other jobs (measured: ILQL test run 4.6 s vs 41.6 s wall). Restored after each test.
    A test module turns it on for all its tests with ``pytest.mark.usefixtures("one_torch_thread")``."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
