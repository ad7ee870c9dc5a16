"""Checkpoints that a killed run can resume from exactly, and loading of weight files.

A training checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it
loads with ``torch.load(weights_only=True)`` (no pickled code runs when a file from elsewhere
is opened). RNG states are stored in that form too: torch CPU/CUDA states as tensors, numpy's
and Python's as lists of ints.

Writes are atomic (temp file + ``os.replace``): a run killed while saving leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrigan.errors import MriganError
from mrigan.fileio import atomic_open

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".chkpt", ".bin")


class CheckpointError(MriganError, RuntimeError):
    """A checkpoint or weight file that is missing, unreadable or of the wrong kind."""


class CheckpointWriteError(MriganError, OSError):
    """A checkpoint that could not be written (a full disk: torch's writer says only
    "unexpected pos"); the previous checkpoint is intact."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """``torch.save`` into a temp file beside ``path``, then rename over it."""
    import shutil

    path = Path(path)
    try:
        with atomic_open(path, "wb") as fh:
            torch.save(state, fh)
    except RuntimeError as exc:  # torch's stream writer turns a failed write into this
        free = shutil.disk_usage(path.parent).free if path.parent.is_dir() else 0
        raise CheckpointWriteError(
            f"could not write the checkpoint ({' '.join(str(exc).split())[:160]}); "
            f"{free:,} bytes free on its disk - free some space and resume (--resume): the "
            "previous checkpoint is intact", path) from exc
    return path


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")


def _deserialise(path: Path, source: Path | io.BytesIO,
                 map_location: str | torch.device) -> dict:
    try:
        state = torch.load(source, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/foreign files
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(state).__name__}")
    return state


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    _require_file(path)
    return _deserialise(path, path, map_location)


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint read once: its path, its contents and the SHA-256 of the bytes they came
    from (what an export records as its source), so a command that needs all three does not
    open the file again."""

    path: Path
    state: dict[str, Any]
    sha256: str


def read_checkpoint(path: str | os.PathLike,
                    map_location: str | torch.device = "cpu") -> CheckpointFile:
    """:func:`load_checkpoint` and the file's SHA-256 from one read of the file."""
    path = Path(path)
    _require_file(path)
    data = path.read_bytes()
    state = _deserialise(path, io.BytesIO(data), map_location)
    return CheckpointFile(path, state, hashlib.sha256(data).hexdigest())


def load_weights(path: str | os.PathLike, key: str | None = None,
                 map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A state dict from a local weight file: ``.safetensors`` (preferred) or a torch file.

    Torch files are read with ``weights_only=True``. When the file is a training checkpoint
    (a dict of state dicts), ``key`` picks one (``"generator"``); without ``key`` a file whose
    values are not all tensors is an error that lists the keys it does have.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weight file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        device = str(map_location) if not isinstance(map_location, str) else map_location
        try:
            state = load_file(str(path), device=device)
        except Exception as exc:
            raise CheckpointError(f"{path}: not a readable .safetensors file ({exc})") from exc
    else:
        state = load_checkpoint(path, map_location=map_location)
    if key is not None:
        if key not in state:
            raise CheckpointError(f"{path}: no {key!r} entry; has {sorted(state)[:20]}")
        state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = sorted(state)[:20] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a flat state dict of tensors (keys: {keys}); "
                              f"pass key=... to pick one")
    return state


# --- RNG states ------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and (when present) CUDA generator states, weights_only-safe."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_kind, np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np.asarray(np_keys, dtype=np.uint32), np_pos, np_has_gauss,
                         np_gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
