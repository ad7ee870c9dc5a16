"""The one guard every command uses before it writes: outputs never go inside an input folder.

Analysts' evidence folders and users' dataset folders must stay exactly as received; writing
beside an input would also make a later folder scan pick the outputs up as inputs. An input
*file* guards its own folder; an input *folder* guards itself. The reverse is refused too: an
output folder that already holds an input file (outputs and inputs never mix).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from mrigan.errors import MriganError


class OutputLocationError(MriganError, ValueError):
    """An output path inside an input folder, an input inside the output folder, or a file
    where a folder is needed."""


def guarded_folder(path: str | os.PathLike) -> Path:
    """The folder an input protects: itself for a folder, its parent for a file."""
    p = Path(path).resolve()
    return p if p.is_dir() else p.parent


def check_output_dir(out_dir: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> Path:
    """Resolve ``out_dir`` and refuse it when it is an existing file, equals or lies inside the
    folder of any input, or contains any input. Returns the resolved folder (not created)."""
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise OutputLocationError("output must be a folder, but a file of that name exists",
                                  out_dir)
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise OutputLocationError(f"output folder cannot be made: {blocking} is a file", out_dir)
    for raw in inputs:
        guarded = guarded_folder(raw)
        if out == guarded or guarded in out.parents:
            raise OutputLocationError(
                f"output folder lies inside the input folder {guarded}: choose an output "
                "outside the inputs (inputs are never written to)", out_dir)
        if out in Path(raw).resolve().parents:
            raise OutputLocationError(
                f"input {raw} is inside the output folder: choose an output folder that "
                "holds no input", out_dir)
    return out
