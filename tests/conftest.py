"""Shared fixtures: the real media in ../shared/data (never copied into the project)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

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
