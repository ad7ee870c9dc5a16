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

Every reader goes through :func:`read_manifest`, which refuses a manifest whose ``image`` or
``mri`` of any row lies outside the root (absolute, or with ``..``), naming the row: a manifest
never makes a trainer open a file outside its data root.

``mri_metric`` (optional) the perceptual metric of the row's MRI (a
``mrigan.perceptual.DISSIMILARITIES`` name); absent or empty: ``ssim`` (every MRI-DF made before
the metric was a choice). One dataset holds one metric: :func:`manifest_metric` refuses a mix.

Optional columns: ``coverage`` (share of the video's sampled frames with a face) and
``detection_pass`` (1: the face was found with the configured thresholds, 2: by the permissive
second pass for low-coverage videos).

A *face set* is the same layout without MRIs (labelled faces of videos that have no
originals): columns at least ``image,label,video,identity,split``; read it with
``read_manifest(root, require_mri=False)``.

The one writer, :class:`MriDfWriter`, is used by every producer (the builder, the synthetic
sets, graded realism sets, the demo). It holds the two rules every producer shares:

* file names: ``faces/<video>/f<frame:06d>_t<track>.png`` and ``mri/<video>/<same name>``;
* black MRIs: a real face's MRI is the one shared ``mri/black_<size>.png`` (all zeros; a real
  face has no manipulated pixel), written once per size.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mrigan.errors import MriganError
from mrigan.fileio import BackgroundImageSaver, atomic_save_image, atomic_write_text, read_image
from mrigan.perceptual import DEFAULT_METRIC

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS: tuple[str, ...] = (
    "image", "mri", "label", "video", "split", "identity", "method", "source", "frame", "track",
)
FACE_SET_COLUMNS: tuple[str, ...] = ("image", "label", "video", "identity", "split")
LABELS = {"real": 0, "fake": 1}


class ManifestError(MriganError, ValueError):
    """A manifest that is missing, malformed, or points at files that do not exist."""


def manifest_path(root: str | os.PathLike) -> Path:
    return Path(root) / MANIFEST_NAME


def read_manifest(root: str | os.PathLike, require_mri: bool = True) -> list[dict]:
    """Rows of ``<root>/manifest.csv`` as dicts of strings (``frame``/``track`` stay strings).

    ``require_mri=False`` reads a face set (no ``mri`` column needed; ``image,label,video,
    identity,split`` are)."""
    path = manifest_path(root)
    if not path.is_file():
        raise ManifestError("no manifest (build one with `mrigan build-dataset`)", path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            needed = ("image", "mri", "label") if require_mri else FACE_SET_COLUMNS
            missing = [c for c in needed if c not in (reader.fieldnames or [])]
            if missing:
                raise ManifestError(f"missing column(s) {missing}; has {reader.fieldnames}", path)
            rows = [dict(r) for r in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"not a readable UTF-8 CSV: {exc}", path) from exc
    for i, r in enumerate(rows):
        if None in r or any(v is None for v in r.values()):
            raise ManifestError(f"row {i + 2} does not have one value per column", path)
        if r["label"] not in LABELS:
            raise ManifestError(f"row {i + 2} has label {r['label']!r}, expected real/fake", path)
        if require_mri and not r["mri"]:
            raise ManifestError(f"row {i + 2} has no mri (a face set? read it with "
                                "require_mri=False)", path)
        for column in ("image", "mri"):
            if r.get(column) and not _inside_root(r[column]):
                raise ManifestError(f"row {i + 2}: {column} {r[column]!r} lies outside the data "
                                    "root (manifest paths are relative to the root, without "
                                    "'..'); nothing outside it is read", path)
        if not require_mri and r.get("detection_pass", "") not in ("", "1", "2"):
            raise ManifestError(f"row {i + 2} has detection_pass {r['detection_pass']!r}, "
                                "expected 1 or 2", path)
    return rows


def manifest_metric(rows: Iterable[Mapping], where: str | os.PathLike | None = None) -> str:
    """The perceptual metric of an MRI-DF's MRIs (its rows' ``mri_metric``; absent or empty:
    ``ssim``). Rows of two metrics are a :class:`ManifestError` naming both."""
    metrics = sorted({str(r.get("mri_metric") or DEFAULT_METRIC) for r in rows})
    if len(metrics) > 1:
        raise ManifestError(f"holds MRIs of more than one perceptual metric ({', '.join(metrics)})"
                            "; one dataset, one metric", where)
    return metrics[0] if metrics else DEFAULT_METRIC


def require_metric(rows: Iterable[Mapping], metric: str, where: str | os.PathLike | None = None,
                   *, what: str = "the generator") -> None:
    """Refuse to score ``what`` (made for ``metric``'s maps) against rows of another metric."""
    have, want = manifest_metric(rows, where), metric or DEFAULT_METRIC
    if have != want:
        raise ManifestError(f"its MRIs are {have} maps but {what} says {want} (a generator "
                            f"predicts the maps of the metric it was trained on); use MRIs built "
                            f"with mri_metric={want}, or set it to {have} to match", where)


def _inside_root(rel: str) -> bool:
    """Whether a manifest path stays inside the root: relative (no drive, no leading slash,
    either slash) and without ``..`` parts."""
    parts = rel.replace("\\", "/").split("/")
    return not (rel.startswith(("/", "\\")) or os.path.isabs(rel) or ":" in parts[0]
                or ".." in parts or "\0" in rel)


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


def face_file_name(frame: int, track: int) -> str:
    """The one file-naming rule: ``f<frame:06d>_t<track>.png`` inside the video's folder."""
    if int(frame) < 0 or int(track) < 0:
        raise ManifestError(f"frame and track must be >= 0, got frame={frame} track={track}")
    return f"f{int(frame):06d}_t{int(track)}.png"


def _check_video_id(video: str) -> str:
    parts = str(video).replace("\\", "/").split("/")
    if not video or video.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ManifestError(f"video id {video!r} must be a relative path without '.' or '..' parts")
    return "/".join(parts)


def black_mri_name(shape: tuple[int, ...]) -> str:
    """The shared black MRI of real faces of this size: ``mri/black_<size>.png``."""
    h, w = int(shape[0]), int(shape[1])
    return f"mri/black_{h}.png" if h == w else f"mri/black_{h}x{w}.png"


class MriDfWriter:
    """The one MRI-DF (and face-set) writer: PNG pair + manifest row for each face.

    ``write`` saves the face PNG and the MRI PNG (each atomically: a reader or a killed run never
    leaves half a PNG), then returns the manifest row; a producer records the rows (manifest,
    resume records) only after ``write`` returned, so a row never points at a missing file.
    Real faces get the shared black MRI (see the module doc); fakes need their MRI (float in
    [0, 1], stored as ``round(MRI * 255)``, or uint8). ``with_mri=False`` writes a face set (no
    ``mri`` file, empty ``mri`` column). Writing one (video, frame, track) twice in one writer is
    an error: two inputs mapped to one id would overwrite each other's files.

    Inside ``with writer.saving_in_background(pending):`` the PNGs are encoded and saved by a
    background thread (``mrigan.fileio.BackgroundImageSaver``) while ``write`` returns its row
    at once; the block ends only once every PNG is on disk, so the rule above becomes: record
    the rows after the block. Same bytes as synchronous writing; a failed save is raised in
    this thread (naming the file) by a later ``write`` or by the end of the block.
    """

    def __init__(self, root: str | os.PathLike, *, with_mri: bool = True,
                 mri_metric: str = DEFAULT_METRIC) -> None:
        self.root = Path(root)
        self.with_mri = with_mri
        #: recorded in every row of an MRI-DF (``mri_metric`` column; not in face sets)
        self.mri_metric = mri_metric
        self._written: set[str] = set()
        self._blacks: set[str] = set()
        self._saver: BackgroundImageSaver | None = None

    @contextlib.contextmanager
    def saving_in_background(self, pending: int = 16) -> Iterator[MriDfWriter]:
        """PNGs of ``write`` saved by one background thread, at most ``pending`` images queued
        (see the class doc); ``pending=0`` saves them synchronously (the same bytes)."""
        if pending <= 0 or self._saver is not None:
            yield self
            return
        with BackgroundImageSaver(pending) as saver:
            self._saver = saver
            try:
                yield self
            finally:
                self._saver = None

    def _save(self, rel: str, image: np.ndarray) -> None:
        if self._saver is not None:
            self._saver.save(self.root / rel, image)
        else:
            atomic_save_image(self.root / rel, image)

    def paths(self, video: str, frame: int, track: int) -> tuple[str, str]:
        """Relative (face, MRI) paths of a face: the one naming rule."""
        video = _check_video_id(video)
        name = face_file_name(frame, track)
        return f"faces/{video}/{name}", f"mri/{video}/{name}"

    def black_mri(self, shape: tuple[int, ...]) -> str:
        rel = black_mri_name(shape)
        if rel not in self._blacks:
            if not (self.root / rel).is_file():
                atomic_save_image(self.root / rel, np.zeros((int(shape[0]), int(shape[1]), 3), np.uint8))
            self._blacks.add(rel)
        return rel

    def write(self, *, face: np.ndarray, label: str, video: str, frame: int = 0, track: int = 0,
              mri: np.ndarray | None = None, **columns) -> dict:
        """Save one face (and its MRI) and return its manifest row (``columns`` are added)."""
        if label not in LABELS:
            raise ManifestError(f"label must be real/fake, got {label!r}")
        face = np.asarray(face)
        if face.ndim != 3 or face.shape[2] != 3 or face.dtype != np.uint8:
            raise ManifestError(f"face of {video!r} must be RGB uint8 HxWx3, got {face.shape} {face.dtype}")
        img_rel, mri_rel = self.paths(video, frame, track)
        if img_rel in self._written:
            raise ManifestError(f"{img_rel} written twice: two inputs map to video id {video!r} "
                                f"(frame {frame}, track {track})")
        mri_u8 = None
        if not self.with_mri:
            if mri is not None:
                raise ManifestError("a face set has no MRIs; got one for " + img_rel)
            mri_rel = ""
        elif label == "real":
            if mri is not None:
                raise ManifestError(f"{img_rel}: real faces get the black MRI, not a given one")
            mri_rel = self.black_mri(face.shape)
        else:
            if mri is None:
                raise ManifestError(f"{img_rel}: a fake needs its MRI")
            mri_u8 = _mri_uint8(np.asarray(mri), img_rel)
            if mri_u8.shape[:2] != face.shape[:2]:
                raise ManifestError(f"{img_rel}: MRI {mri_u8.shape} and face {face.shape} differ in size")
        self._save(img_rel, face)
        if mri_u8 is not None:
            self._save(mri_rel, mri_u8)
        self._written.add(img_rel)
        metric = {"mri_metric": self.mri_metric} if self.with_mri else {}
        return {"image": img_rel, "mri": mri_rel, "label": label, "video": video,
                "frame": int(frame), "track": int(track), **columns, **metric}


def _mri_uint8(mri: np.ndarray, where: str) -> np.ndarray:
    if mri.ndim == 2:
        mri = np.repeat(mri[..., None], 3, axis=2)
    if mri.dtype == np.uint8:
        return mri
    mri = mri.astype(np.float32)
    if not np.isfinite(mri).all():
        raise ManifestError(f"{where}: MRI holds NaN or infinite values")
    return np.clip(np.rint(np.clip(mri, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)


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
