"""Shared fixtures: the real media in ../shared/data (never copied into the project)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# The suite sees a CPU without native bf16 whatever it runs on (mrigan.device.NATIVE_BF16_ENV),
# so no test depends on the machine's capability by accident: CPUs of both kinds run the same
# suite. Tests of what depends on it take the `bf16_capability` fixture (both answers), and
# `MRIGAN_NATIVE_BF16=1 make test` runs the whole suite as a CPU with native bf16.
os.environ.setdefault("MRIGAN_NATIVE_BF16", "0")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MRIGAN_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test media not found at {SHARED_DATA} (CI puts ../shared beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ff_examples(shared_data: Path) -> Path:
    return shared_data / "ff_examples"


@pytest.fixture(scope="session")
def ffpp_root(shared_data: Path) -> Path:
    return shared_data / "ffpp"


@pytest.fixture(params=[True, False], ids=["bf16-native", "bf16-not-native"])
def bf16_capability(request, monkeypatch) -> bool:
    """Runs a test twice: as a CPU with native bf16 and as one without (the detection is
    forced through MRIGAN_NATIVE_BF16, which subprocesses inherit too)."""
    monkeypatch.setenv("MRIGAN_NATIVE_BF16", "1" if request.param else "0")
    return request.param


def _torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for small models: on 2 cores shared with other processes, OpenMP
    barriers of a second thread cost far more than they bring (measured ~10x)."""
    yield from _torch_threads(1)


@pytest.fixture(scope="module")
def two_torch_threads():
    """Two intra-op threads for a whole module (MTCNN and the analyst pipeline on 2 cores)."""
    yield from _torch_threads(2)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Thread settings never leak from one test into the next (numba's parallel SSIM and
    tests that pick a count themselves change torch's)."""
    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip on machines without a CUDA GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
