"""Rated videos as a realism model sees them: face crops in frame order (and their MRIs).

A :class:`Clip` pairs one :class:`~detectors.realism.labels.MosRecord` with its face frames,
either image files or in-memory arrays, and optionally one MRI per frame (precomputed files
or arrays; without them, MRIs are made on the fly by an MRI generator, see ``mri_source``).

Three ways to get clips for a label file:

* :func:`clips_from_folders` - ``<root>/<key without extension>/*.png`` face crops, with MRIs
  (when present) of the same names in ``.../mri/``. This is what
  :func:`extract_video_faces` writes from videos, and what graded synthetic sets use.
* :func:`clips_from_manifest` - join labels to the face tracks of an MRI-DF dataset
  (``mrigan.mri_df_format.read_manifest``), taking each video's longest track.
* Arrays, for tests and notebooks: ``Clip(record, faces=[...])``.

Labels without frames are counted and reported, never silently dropped: the caller gets the
missing keys back and decides (the commands stop when any is missing unless told otherwise).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from datasets_builders.faces import FaceDetectionConfig, NoFaceError, iter_face_tracks
from datasets_builders.frames import iter_frames
from detectors.realism.labels import MosRecord
from mrigan.errors import MriganError
from mrigan.fileio import atomic_save_image, read_image
from mrigan.media import IMAGE_SUFFIXES
from mrigan.mri_df_format import read_manifest

FrameRef = str | os.PathLike | np.ndarray


@dataclass(frozen=True)
class Clip:
    """One rated video: ``faces`` (paths or uint8 HxWx3 arrays) in frame order, optional MRIs
    (paths or float/uint8 arrays, same length as ``faces``)."""

    record: MosRecord
    faces: tuple[FrameRef, ...]
    mris: tuple[FrameRef, ...] = ()

    def __post_init__(self) -> None:
        if not self.faces:
            raise ValueError(f"clip {self.record.key!r} has no face frame")
        if self.mris and len(self.mris) != len(self.faces):
            raise ValueError(f"clip {self.record.key!r}: {len(self.faces)} faces but "
                             f"{len(self.mris)} MRIs")

    @property
    def key(self) -> str:
        return self.record.key

    @property
    def mos(self) -> float:
        return self.record.mos

    def __len__(self) -> int:
        return len(self.faces)


def load_face(ref: FrameRef, size: int) -> np.ndarray:
    """RGB uint8 ``size`` x ``size`` face crop."""
    img = read_image(ref) if not isinstance(ref, np.ndarray) else ref
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"face frame must be RGB uint8 HxWx3, got {img.shape} {img.dtype}")
    return _resize(img, size)


def load_mri(ref: FrameRef, size: int) -> np.ndarray:
    """MRI as float32 ``size`` x ``size`` x 3 in [0, 1] (uint8 files hold ``round(255 * MRI)``)."""
    img = read_image(ref) if not isinstance(ref, np.ndarray) else ref
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    img = np.clip(img.astype(np.float32), 0.0, 1.0)
    return _resize(img, size)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    interp = cv2.INTER_AREA if max(h, w) > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


class ClipFilesError(MriganError, ValueError):
    """Face-crop folders that do not fit the labels (a key outside the clips folder)."""


class MissingClipFilesError(MriganError, FileNotFoundError):
    """MRIs asked for but missing for some face frames."""


def clip_dir(root: str | os.PathLike, key: str) -> Path:
    """Where a video's face crops live under ``root``: the key without its extension."""
    rel = PurePosixPath(key.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts:
        raise ClipFilesError(f"label key {key!r} must be a relative path inside the clips folder")
    stem = rel.name.rsplit(".", 1)[0] if "." in rel.name else rel.name
    return Path(root, *rel.parent.parts, stem)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def clips_from_folders(records: Sequence[MosRecord], root: str | os.PathLike,
                       require_mri: bool = False) -> tuple[list[Clip], list[str]]:
    """Clips for the records whose folder holds face images; also the keys without frames."""
    clips, missing = [], []
    for r in records:
        folder = clip_dir(root, r.key)
        faces = _images(folder) if folder.is_dir() else []
        if not faces:
            missing.append(r.key)
            continue
        mri_dir = folder / "mri"
        mris: tuple = ()
        if mri_dir.is_dir():
            by_name = {p.name: p for p in _images(mri_dir)}
            lacking = [f.name for f in faces if f.name not in by_name]
            if lacking:
                raise MissingClipFilesError(f"{mri_dir}: no MRI for face frame(s) {lacking[:3]}")
            mris = tuple(str(by_name[f.name]) for f in faces)
        elif require_mri:
            raise MissingClipFilesError(f"{mri_dir}: MRI inputs asked for but no MRI folder "
                                        "(use data.mri_source=generator to make them on the fly)")
        clips.append(Clip(r, tuple(str(f) for f in faces), mris))
    return clips, missing


def _video_match_keys(video: str, method: str) -> set[str]:
    """Names by which a label may refer to a manifest video (lower case, no extension)."""
    p = PurePosixPath(video.replace("\\", "/"))
    stem = p.name.rsplit(".", 1)[0] if "." in p.name else p.name
    keys = {stem.lower(), str(p.with_name(stem)).lower()}
    if method:
        keys.add(f"{method}/{stem}".lower())
    return keys


def _label_match_key(record: MosRecord) -> str:
    key = record.key.replace("\\", "/")
    key = key.rsplit(".", 1)[0] if "." in PurePosixPath(key).name else key
    if record.dataset == "dfgc2022":
        key = key.removesuffix("-crop")
    return key.lower()


def clips_from_manifest(records: Sequence[MosRecord], root: str | os.PathLike,
                        rows: Sequence[dict] | None = None) -> tuple[list[Clip], list[str]]:
    """Join labels to an MRI-DF dataset's face tracks (the longest track of each video).

    A label matches a manifest video by ``<method>/<stem>`` (DREAM's ``Face2Face/093_121``
    against ``.../Face2Face/.../093_121.mp4``), by the path without extension, or by the bare
    stem when that stem is unique. Ambiguous stems are not guessed: they count as missing.
    """

    root = Path(root)
    rows = read_manifest(root) if rows is None else rows
    tracks: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        tracks.setdefault((row.get("video", ""), row.get("track", "0")), []).append(row)
    index: dict[str, set[str]] = {}
    method_of: dict[str, str] = {}
    for video, _track in tracks:
        method_of[video] = next(r.get("method", "") for r in tracks[(video, _track)])
        for k in _video_match_keys(video, method_of[video]):
            index.setdefault(k, set()).add(video)
    clips, missing = [], []
    for r in records:
        found = index.get(_label_match_key(r), set())
        if len(found) != 1:
            missing.append(r.key)
            continue
        video = next(iter(found))
        best = max((t for (v, _), t in tracks.items() if v == video), key=len)
        best = sorted(best, key=lambda row: int(row.get("frame", 0) or 0))
        faces = tuple(str(root / row["image"]) for row in best)
        mris = tuple(str(root / row["mri"]) for row in best if row.get("mri"))
        clips.append(Clip(r, faces, mris if len(mris) == len(faces) else ()))
    return clips, missing


def video_face_track(video: str | os.PathLike, *, detector=None, every: int = 5,
                     max_frames: int | None = 50, size: int = 128, margin: float = 1.3,
                     detect_every: int = 1) -> list[tuple[int, np.ndarray]]:
    """``(frame_index, RGB uint8 size x size crop)`` of the longest face track of ``video``.

    Frames are every ``every``-th of the video; MTCNN runs on every ``detect_every``-th of
    those and the frames in between reuse the last box (``faces.iter_face_tracks``, the one
    face-track loop). ``detector``: a loaded ``FaceDetector`` (default: one of
    ``FaceDetectionConfig``'s defaults).
    """
    config = FaceDetectionConfig(size=size, margin=margin)
    tracks: dict[int, list[tuple[int, np.ndarray]]] = {}
    probed = 0
    for pos, tf in enumerate(iter_face_tracks(lambda: iter_frames(video, every=every, max_frames=max_frames),
                                              detector, config, detect_every=detect_every)):
        probed += pos % detect_every == 0
        for face in tf.faces:
            tracks.setdefault(face.track, []).append((tf.index, face.crop))
    if not tracks:
        raise NoFaceError(f"no face found in {probed} probed frames", video)
    return max(tracks.values(), key=len)


def extract_video_faces(video: str | os.PathLike, out_dir: str | os.PathLike, **kwargs) -> list[Path]:
    """Write :func:`video_face_track`'s crops as ``out_dir/<frame>.png`` (the layout
    :func:`clips_from_folders` reads); returns the written files. For realism sets shipped
    as videos (DFGC, DREAM): run once per video, train many times."""

    written = []
    for index, crop in video_face_track(video, **kwargs):
        dest = Path(out_dir) / f"{index:06d}.png"
        atomic_save_image(dest, crop)
        written.append(dest)
    return written
