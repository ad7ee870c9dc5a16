"""The MRI-DF format (core): manifest schema, reader, writer, and the torch ``Dataset``.

An MRI-DF root holds PNG face crops, PNG MRIs and ``manifest.csv``, one row per (face, MRI)
pair. Paths in the manifest are relative to the root, so a dataset folder can be moved or
copied to another machine as a whole. Columns (at least, in this order; extra columns follow):

``image``     RGB uint8 PNG face crop
``mri``       RGB uint8 PNG of ``round(MRI * 255)``; black for real faces
``label``     ``real`` or ``fake``
``video``     the video (or image) the crop comes from; fakes and their original differ
``split``     ``train`` / ``val`` / ``test``, grouped by identity so no person is in two splits
``identity``  the person / source id that groups a fake with its original
``method``    manipulation method (``Deepfakes``, ``self_blend``, ... ; ``original`` for reals)
``source``    the dataset the row comes from (``ffpp``, ``dfdc``, ``synthetic``, ...)
``frame``     frame index in the video (0 for still images)
``track``     face track within the video (several faces per video are separate tracks)
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mrigan.errors import MriganError
from mrigan.fileio import atomic_write_text, read_image

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS: tuple[str, ...] = (
    "image", "mri", "label", "video", "split", "identity", "method", "source", "frame", "track",
)
LABELS = {"real": 0, "fake": 1}


class ManifestError(MriganError, ValueError):
    """A manifest that is missing, malformed, or points at files that do not exist."""


def manifest_path(root: str | os.PathLike) -> Path:
    return Path(root) / MANIFEST_NAME


def read_manifest(root: str | os.PathLike, require_mri: bool = True) -> list[dict]:
    """Rows of ``<root>/manifest.csv`` as dicts of strings (``frame``/``track`` stay strings).

    ``require_mri=False`` also accepts a *face set* (the same format without the ``mri``
    column: labelled faces to score, with no ground-truth MRIs).
    """
    path = manifest_path(root)
    if not path.is_file():
        raise ManifestError(f"{path}: no manifest (build one with `mrigan build-dataset`)")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        required = ("image", "mri", "label") if require_mri else ("image", "label")
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: missing column(s) {missing}; has {reader.fieldnames}")
        rows = [dict(r) for r in reader]
    for i, r in enumerate(rows):
        if r["label"] not in LABELS:
            raise ManifestError(f"{path}: row {i + 2} has label {r['label']!r}, expected real/fake")
    return rows


def manifest_text(rows: Iterable[Mapping]) -> str:
    """CSV text of ``rows`` with the standard columns first, then extras in first-seen order."""
    rows = list(rows)
    columns = list(MANIFEST_COLUMNS)
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: r.get(c, "") for c in columns})
    return buf.getvalue()


def write_manifest(root: str | os.PathLike, rows: Iterable[Mapping]) -> Path:
    """Write ``<root>/manifest.csv`` atomically (a reader never sees half a manifest)."""
    path = manifest_path(root)
    atomic_write_text(path, manifest_text(rows))
    return path


def balanced_indices(labels: Sequence[int], epoch: int, seed: int) -> list[int]:
    """The paper's balanced epoch: every fake plus an equal random draw of reals, shuffled.

    A pure function of ``(labels, epoch, seed)``: a resumed trainer that asks for epoch 7
    again gets exactly the epoch it was interrupted in. The real draw changes every epoch, so
    over many epochs all reals are seen. If there are fewer reals than fakes (DFDC without
    extra real faces), every real is used and the missing ones are drawn again (with
    replacement) so the epoch stays 50/50.
    """
    labels = np.asarray(labels, dtype=np.int64)
    fakes = np.flatnonzero(labels == 1)
    reals = np.flatnonzero(labels == 0)
    rng = np.random.default_rng([int(seed), int(epoch)])
    n = len(fakes)
    if n == 0 or len(reals) == 0:
        chosen = np.concatenate([fakes, reals])
    elif len(reals) >= n:
        chosen = np.concatenate([fakes, rng.choice(reals, size=n, replace=False)])
    else:
        extra = rng.choice(reals, size=n - len(reals), replace=True)
        chosen = np.concatenate([fakes, reals, extra])
    return [int(i) for i in rng.permutation(chosen)]


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


class MriDfDataset(Dataset):
    """(face, MRI, label) items from an MRI-DF root, optionally one split only.

    ``image_size`` resizes both PNGs (area interpolation when shrinking) so one dataset built at
    256 px also serves a 64 px CPU run. Items: ``image`` and ``mri`` float32 3xHxW in [0, 1],
    ``label`` 0 real / 1 fake, ``video`` and ``index`` (the manifest row among the selected).
    """

    def __init__(self, root: str | os.PathLike, split: str | None = None,
                 image_size: int | None = None) -> None:
        self.root = Path(root)
        rows = read_manifest(self.root)
        if split is not None:
            rows = [r for r in rows if r.get("split") == split]
            if not rows:
                raise ManifestError(f"{manifest_path(self.root)}: no rows in split {split!r}")
        self.rows = rows
        self.split = split
        self.image_size = image_size
        self.labels: list[int] = [LABELS[r["label"]] for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def _load(self, rel: str) -> np.ndarray:
        img = read_image(self.root / rel)
        if self.image_size and img.shape[:2] != (self.image_size, self.image_size):
            import cv2

            shrink = img.shape[0] > self.image_size
            img = cv2.resize(img, (self.image_size, self.image_size),
                             interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return img

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        image, mri = self._load(row["image"]), self._load(row["mri"])
        if image.shape != mri.shape:
            raise ManifestError(
                f"{self.root / row['mri']}: size {mri.shape} differs from its face {row['image']} {image.shape}")
        return {"image": _to_tensor(image), "mri": _to_tensor(mri), "label": self.labels[index],
                "video": row.get("video", ""), "index": index}
