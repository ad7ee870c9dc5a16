"""Rated "videos" with a known ground truth, from real face frames: graded self-blends.

A realism model is hard to check on human MOS alone (noisy, small sets, no videos shipped
here). Graded self-blended fakes give an exact answer key: ``quality`` in [0, 1] sets every
artefact's strength (blend opacity, boundary sharpness, colour and blur mismatch) and
``quality_to_mos`` maps it to the 1-5 scale. A clip is a run of consecutive real face frames
of one person, all blended with the same artefact parameters (as one deepfake tool run on one
video), so a learner must read artefacts, not memorise faces.

MRIs of these clips are the true maps of the chosen perceptual metric (``mri_metric``, a
``mrigan.perceptual.DISSIMILARITIES`` name; ``ssim``: ``clip(1 - SSIM(real, fake))``, the paper's),
an upper bound for what an MRI generator can give, so ``mri`` inputs on graded clips measure the
ceiling of the MRI idea. The experiments that use these clips (a rated set on disk, plain vs MRI
inputs) are ``bench/realism_graded.py``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from datasets_builders.faces import FaceDetectionConfig, NoFaceError, iter_face_tracks
from datasets_builders.synthetic import graded_params, quality_to_mos, self_blend
from detectors.realism.clips import Clip, clip_dir, video_face_track
from detectors.realism.labels import MosRecord, write_table
from mrigan.fileio import atomic_save_image, read_image
from mrigan.media import VIDEO_SUFFIXES
from mrigan.mri_df_format import MriDfWriter, write_manifest
from mrigan.perceptual import DEFAULT_METRIC, get, metric_map_np, mri_to_uint8


def graded_clips(faces_by_identity: Mapping[str, Sequence[np.ndarray]],
                 qualities: Sequence[float] = tuple(np.linspace(0.0, 1.0, 9)), *,
                 clips_per_level: int = 1, frames_per_clip: int = 8, seed: int = 0,
                 method: str = "self_blend", key_prefix: str = "",
                 mri_metric: str = DEFAULT_METRIC) -> list[Clip]:
    """One clip per (identity, quality, repeat): faces, fakes' MRIs (``mri_metric`` maps), MOS
    from the quality.

    ``faces_by_identity`` maps a person id to that person's face crops in frame order (RGB
    uint8, one size). Clips of one person start at random frames of their sequence.
    """
    get(mri_metric)  # an unknown metric fails before any work
    rng = np.random.default_rng(seed)
    clips = []
    for ident, faces in faces_by_identity.items():
        if len(faces) == 0:
            raise ValueError(f"identity {ident!r} has no face frame")
        n = min(frames_per_clip, len(faces))
        for qi, q in enumerate(qualities):
            for k in range(clips_per_level):
                start = int(rng.integers(0, len(faces) - n + 1))
                params = graded_params(float(q), rng)  # one tool setting for the whole clip
                fakes, mris = [], []
                for face in faces[start:start + n]:
                    pair = self_blend(np.ascontiguousarray(face), rng, params)
                    fakes.append(pair.fake)
                    mris.append(mri_to_uint8(metric_map_np(pair.real, pair.fake,
                                                           metric=mri_metric)))
                record = MosRecord(key=f"{key_prefix}{ident}/q{qi:02d}_{k}", mos=quality_to_mos(float(q)),
                                   identities=(ident,), method=method, dataset="graded",
                                   info={"quality": float(q), "start": start})
                clips.append(Clip(record, tuple(fakes), tuple(mris)))
    return clips


def write_clips(clips: Sequence[Clip], root: str | os.PathLike, labels_name: str = "labels.csv") -> Path:
    """Write in-memory clips in the folder layout of ``clips_from_folders`` plus a
    ``file,mos,identity,method`` label table; returns the label file."""
    root = Path(root)
    for clip in clips:
        folder = clip_dir(root, clip.key)
        for i, face in enumerate(clip.faces):
            if not isinstance(face, np.ndarray):
                raise TypeError(f"clip {clip.key!r}: write_clips needs in-memory frames")
            atomic_save_image(folder / f"{i:04d}.png", face)
            if clip.mris:
                atomic_save_image(folder / "mri" / f"{i:04d}.png", np.asarray(clip.mris[i]))
    labels = root / labels_name
    write_table(labels, [c.record for c in clips])
    return labels


def records_of(clips: Sequence[Clip]) -> list[MosRecord]:
    return [c.record for c in clips]


def still_to_frames(face: np.ndarray, n: int, rng: np.random.Generator, shift: float = 2.0) -> list[np.ndarray]:
    """A still photo as a short handheld "video": small random shifts of the crop."""
    import cv2

    out = []
    for _ in range(n):
        m = np.float32([[1, 0, rng.uniform(-shift, shift)], [0, 1, rng.uniform(-shift, shift)]])
        out.append(cv2.warpAffine(face, m, face.shape[1::-1], borderMode=cv2.BORDER_REFLECT))
    return out


def faces_from_media(media: Mapping[str, str | os.PathLike], *, size: int = 64, every: int = 2,
                     max_frames: int = 15, detect_every: int = 8, still_frames: int = 12,
                     detector=None, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """``{person: face crops}`` from one video or photo per person (MTCNN, longest track).

    Photos become ``still_frames`` slightly shifted copies, so every person has a sequence.
    """

    # 480 px detection: these are close-up interviews and a photo (faster on CPU, same faces)
    config = FaceDetectionConfig(device="cpu", max_side=480, size=size)
    detector = detector or config.detector()
    rng = np.random.default_rng(seed)
    people: dict[str, list[np.ndarray]] = {}
    for name, path in media.items():
        if Path(path).suffix.lower() in VIDEO_SUFFIXES:
            track = video_face_track(path, detector=detector, every=every, max_frames=max_frames,
                                     size=size, detect_every=detect_every)
            people[name] = [crop for _, crop in track]
        else:
            photo = read_image(path)
            first = next(iter_face_tracks(lambda photo=photo: [(0, photo)], detector, config))
            if not first.faces:
                raise NoFaceError("no face found", path)
            people[name] = still_to_frames(first.faces[0].crop, still_frames, rng)
    return people


def write_people_mri_df(people: Mapping[str, Sequence[np.ndarray]], out: str | os.PathLike, *,
                        fakes_per_frame: int = 2, val_people: Sequence[str] = (), seed: int = 0,
                        mri_metric: str = DEFAULT_METRIC) -> Path:
    """An MRI-DF dataset (manifest + PNGs) of random self-blends of ``people``, to train an
    MRI generator on exactly the people a realism experiment trains on (never its test people).
    ``val_people`` go to the ``val`` split."""

    root = Path(out)
    rng = np.random.default_rng(seed)
    get(mri_metric)
    writer = MriDfWriter(root, mri_metric=mri_metric)
    rows = []
    for ident, faces in people.items():
        common = {"split": "val" if ident in val_people else "train", "identity": ident,
                  "source": "graded"}
        for f, face in enumerate(faces):
            face = np.ascontiguousarray(face)
            rows.append(writer.write(face=face, label="real", video=f"{ident}_real", frame=f,
                                     method="original", **common))
            for k in range(fakes_per_frame):
                pair = self_blend(face, rng)
                rows.append(writer.write(face=pair.fake, mri=metric_map_np(pair.real, pair.fake, metric=mri_metric),
                                         label="fake", video=f"{ident}_fake{k}", frame=f,
                                         method="self_blend", **common))
    write_manifest(root, rows)
    return root
