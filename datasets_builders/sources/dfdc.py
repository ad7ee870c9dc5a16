"""DFDC: ``metadata.json`` per part folder, ``{"x.mp4": {"label": "FAKE", "original":
"y.mp4", "split": "train"}}``. Originals live in the same part folder as their fakes.

DFDC has no identity labels; the original video groups a fake with its real, so its id
is the identity used for splitting.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from datasets_builders.sources.base import (
    SOURCES,
    Listing,
    SourceError,
    VideoItem,
    require_dir,
    safe_id,
)


def parse_dfdc_metadata(path: str | os.PathLike) -> dict[str, dict]:
    """The entries of one DFDC metadata file, validated (label REAL/FAKE, FAKE has original)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SourceError(path, "DFDC metadata file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(path, f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SourceError(path, "DFDC metadata must be a JSON object of file name -> entry")
    return data


def _entry_problem(entry: object) -> str | None:
    if not isinstance(entry, dict) or entry.get("label") not in ("REAL", "FAKE"):
        return "bad metadata entry (label not REAL/FAKE)"
    if entry["label"] == "FAKE" and not entry.get("original"):
        return "bad metadata entry (FAKE without original)"
    return None


@SOURCES.register("dfdc")
def read_dfdc(root: str | os.PathLike, *, name: str = "dfdc", metadata: str = "metadata.json") -> Listing:
    """List a DFDC part folder, or a folder of part folders (``dfdc_train_part_*``).

    A listed file that does not exist is skipped and counted; a fake whose original is
    absent is still listed (a plain-frame detector can use it); the MRI-DF builder skips it.
    """
    root = require_dir(root, "DFDC")
    files = [root / metadata] if (root / metadata).is_file() else sorted(root.glob(f"*/{metadata}"))
    if not files:
        raise SourceError(root, f"no {metadata} in this folder or its part folders")
    out = Listing()
    for meta in files:
        folder = meta.parent
        part = "" if folder == root else safe_id(folder.name) + "/"
        for fname, entry in sorted(parse_dfdc_metadata(meta).items()):
            path = folder / fname
            problem = _entry_problem(entry)
            if problem:
                out.skip(path, problem)
                continue
            if not path.is_file():
                out.skip(path, "listed file missing")
                continue
            stem = Path(fname).stem
            common = {"path": path, "source": name, "video_id": part + safe_id(stem),
                      "method": "DFDC", "dataset_split": entry.get("split")}
            if entry["label"] == "REAL":
                out.items.append(VideoItem(label="real", identity=stem, **{**common, "method": "original"}))
            else:
                ostem = Path(entry["original"]).stem
                out.items.append(VideoItem(label="fake", identity=ostem, original=folder / entry["original"],
                                           original_id=part + safe_id(ostem), **common))
    return out
