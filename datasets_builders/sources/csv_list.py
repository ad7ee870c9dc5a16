"""A generic CSV listing: ``path,label[,original,identity,method,split]``, paths relative to the CSV.

``label`` is ``real``/``fake`` (also ``REAL``/``FAKE``, ``0``/``1`` with 1 = fake). ``original``
(for fakes) names the real video the fake was made from; ``identity`` defaults to the
original's file stem, which groups a fake with its real for splitting. ``split`` (optional)
is the listing's own train/val/test split, kept as ``dataset_split``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from datasets_builders.sources.base import (
    IMAGE_SUFFIXES,
    SOURCES,
    Listing,
    SourceError,
    VideoItem,
    stem_id,
)

LABEL_WORDS = {"real": "real", "fake": "fake", "0": "real", "1": "fake"}


@SOURCES.register("csv")
def read_csv_list(csv_path: str | os.PathLike, *, name: str = "csv") -> Listing:
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise SourceError(csv_path, "CSV listing not found")
    base = csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            cols = [c.strip() for c in reader.fieldnames or []]
            if "path" not in cols or "label" not in cols:
                raise SourceError(csv_path, f"needs columns path,label (optional original,identity,"
                                            f"method); has {cols}")
            raw = list(reader)
    except UnicodeDecodeError as exc:
        raise SourceError(csv_path, f"not UTF-8 text ({exc.reason} at byte {exc.start}); save "
                                    "the listing as UTF-8") from exc
    except csv.Error as exc:
        raise SourceError(csv_path, f"not a readable CSV: {exc}") from exc
    out = Listing()
    rows = []
    for n, r in enumerate(raw, 2):
        if None in r or any(v is None for v in r.values()):
            out.skip(f"{csv_path}:{n}", "bad CSV row (not one value per column)")
            rows.append(None)
            continue
        rows.append({(k or "").strip(): (v or "").strip() for k, v in r.items()})
    for n, row in enumerate(rows, 2):
        if row is None:
            continue
        where = f"{csv_path}:{n}"
        label = LABEL_WORDS.get(row["label"].lower())
        if not row["path"] or label is None:
            out.skip(where, "bad CSV row (empty path or label not real/fake)")
            continue
        path = base / row["path"]
        if not path.is_file():
            out.skip(path, "listed file missing" if not path.exists() else
                     "listed path is not a regular file")
            continue
        original = base / row["original"] if row.get("original") else None
        if label == "real":
            identity = row.get("identity") or path.stem
        else:
            identity = row.get("identity") or (original.stem if original else path.stem)
        out.items.append(VideoItem(
            path=path, label=label, source=name, video_id=stem_id(path, base), identity=identity,
            method=row.get("method") or ("original" if label == "real" else "unknown"),
            original=original if label == "fake" else None,
            original_id=stem_id(original, base) if original is not None and label == "fake" else None,
            dataset_split=row.get("split") or None,
            is_image=path.suffix.lower() in IMAGE_SUFFIXES))
    return out
