"""Faces for detectors: manifest rows -> grouped splits -> frame or clip datasets.

Rows come from the MRI-DF manifest (``mrigan.mri_df_format.read_manifest``). A *unit* is
what the model scores: one face (frame mode) or one clip of consecutive faces of a track
(temporal mode). Every unit carries its video, label, identity and method, so scores can be
aggregated per video and test sets cut by method.

Splits must never share a person or a video: a detector that saw a face of identity 519 in
training is not being tested on an unseen video when a fake of 519 is in the test set.
:func:`group_splits` recomputes splits with that guarantee and :func:`check_grouped` verifies a
manifest's own split column.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mrigan.fileio import read_image
from mrigan.grouping import DisjointSets
from mrigan.mri_df_format import LABELS, ManifestError, read_manifest

#: Metadata columns copied from the manifest to every unit (and to prediction CSVs).
#: ``method`` of the builder's self-blended fakes (``BuildSelfBlendConfig``)
SELF_BLEND = "self_blend"
UNIT_COLUMNS = ("video", "identity", "method", "source", "track", "frame", "image")


class SplitLeakError(ManifestError):
    """A video or identity that appears in two splits."""


def load_rows(root: str | os.PathLike, require_mri: bool = True) -> list[dict]:
    """Manifest rows with ``label`` as int (1 = fake) and ``frame`` as int.

    ``require_mri=False`` reads face sets too (manifests without the ``mri`` column)."""
    rows = []
    for r in read_manifest(root, require_mri=require_mri):
        row = dict(r)
        row["label"] = LABELS[r["label"]]
        row["frame"] = int(r.get("frame") or 0)
        row["track"] = str(r.get("track") or "0")
        row.setdefault("identity", "")
        row.setdefault("video", r["image"])
        rows.append(row)
    return rows


def keeps_fake(row: dict, fakes: str) -> bool:
    """Whether a row stays under ``data.train_fakes`` (reals always do): ``all`` fakes,
    ``real`` manipulations only (no self-blends), or ``self_blend`` only (the SBI recipe:
    real faces against their self-blends, no real deepfake)."""
    if row["label"] == 0 or fakes == "all":
        return True
    blend = row.get("method") == SELF_BLEND
    if fakes == "self_blend":
        return blend
    if fakes == "real":
        return not blend
    raise ValueError(f"unknown fakes selection {fakes!r} (all, real, self_blend)")


def select_rows(rows: Iterable[dict], *, split: str | None = None,
                methods: Sequence[str] = (), sources: Sequence[str] = (),
                max_per_video: int | None = None, fakes: str = "all") -> list[dict]:
    """Rows of one split; fakes limited to ``methods`` (reals kept) and to ``fakes``
    (:func:`keeps_fake`), rows to ``sources``; at most ``max_per_video`` evenly spaced faces
    per video (all tracks together)."""
    out = [r for r in rows
           if (split is None or r.get("split") == split)
           and (not sources or r.get("source") in sources)
           and (not methods or r["label"] == 0 or r.get("method") in methods)
           and keeps_fake(r, fakes)]
    if max_per_video:
        by_video: dict[str, list[dict]] = defaultdict(list)
        for r in out:
            by_video[r["video"]].append(r)
        out = []
        for video_rows in by_video.values():
            video_rows.sort(key=lambda r: (r["frame"], r["track"]))
            if len(video_rows) > max_per_video:
                keep = np.linspace(0, len(video_rows) - 1, max_per_video).round().astype(int)
                video_rows = [video_rows[i] for i in sorted(set(keep.tolist()))]
            out.extend(video_rows)
    return out


def _components(rows: Sequence[dict]) -> list[list[int]]:
    """Row indices grouped so that rows sharing a video or an identity are together."""
    sets = DisjointSets()
    for r in rows:
        sets.find("v:" + r["video"])
        if r.get("identity"):
            sets.union("v:" + r["video"], "i:" + r["identity"])
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[sets.find("v:" + r["video"])].append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def group_splits(rows: Sequence[dict], *, val_fraction: float = 0.15,
                 test_fraction: float = 0.15, seed: int = 0) -> list[dict]:
    """Copies of ``rows`` with a new ``split`` (train/val/test) that keeps every video and
    every identity inside one split. Groups are dealt in a seeded random order to the split
    furthest below its target share of rows."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"bad split fractions val={val_fraction} test={test_fraction}")
    groups = _components(rows)
    order = np.random.default_rng(seed).permutation(len(groups))
    targets = {"train": 1 - val_fraction - test_fraction, "val": val_fraction,
               "test": test_fraction}
    counts = dict.fromkeys(targets, 0)
    total = len(rows)
    out = [dict(r) for r in rows]
    for gi in order:
        group = groups[gi]
        split = max(targets, key=lambda s: targets[s] * total - counts[s])
        counts[split] += len(group)
        for i in group:
            out[i]["split"] = split
    return out


def check_grouped(rows: Sequence[dict]) -> None:
    """Raise :class:`SplitLeakError` if a video or identity appears in more than one split."""
    for key in ("video", "identity"):
        seen: dict[str, set[str]] = defaultdict(set)
        for r in rows:
            if r.get(key):
                seen[r[key]].add(r.get("split", ""))
        leaks = sorted(k for k, s in seen.items() if len(s) > 1)
        if leaks:
            raise SplitLeakError(
                f"{len(leaks)} {key}(s) appear in several splits, e.g. {leaks[:3]} "
                f"in {sorted(seen[leaks[0]])}; set data.regroup=true to recompute grouped splits")


# ----------------------------------------------------------------------------------------------
# datasets


def load_face(path: Path, size: int | None) -> np.ndarray:
    """RGB uint8 ``size`` x ``size`` (area interpolation when shrinking)."""
    img = read_image(path)
    if size and img.shape[:2] != (size, size):
        import cv2

        shrink = img.shape[0] > size
        img = cv2.resize(img, (size, size),
                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return img


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


def unit_meta(row: dict) -> dict:
    return {"label": row["label"], **{c: row.get(c, "") for c in UNIT_COLUMNS}}


class FaceDataset(Dataset):
    """One face per item: ``{"image": 3xHxW float, "label": float, "index": int}``.

    ``path_of(row)`` says which file to read for a row (the face crop, a cached MRI, ...);
    ``augment`` is a callable on a uint8 image (see :mod:`detectors.augment`).
    """

    def __init__(self, rows: Sequence[dict], path_of: Callable[[dict], Path], image_size: int,
                 augment: Callable | None = None) -> None:
        self.rows = list(rows)
        self.path_of = path_of
        self.image_size = image_size
        self.augment = augment
        self.augment_key: tuple[int, int] = (0, 0)  # (seed, epoch), set by the trainer
        self.units = [unit_meta(r) for r in self.rows]
        self.labels = [r["label"] for r in self.rows]
        # the real face a fake was made from shares identity, frame and track
        self.pair_keys = [(r.get("identity", ""), r["frame"], r["track"]) for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        img = load_face(self.path_of(self.rows[index]), self.image_size)
        if self.augment is not None:
            img = self.augment(img, (*self.augment_key, index))
        return {"image": to_tensor(img), "label": float(self.labels[index]), "index": index}


class ClipDataset(Dataset):
    """Consecutive faces of one track per item, for temporal detectors.

    Each (video, track) is cut into clips of ``clip_length`` faces in frame order; the last,
    shorter clip is padded. Items: ``{"image": TxCxHxW, "mask": T bool, "label", "index"}``.
    One augmentation draw is applied to every frame of a clip (a flicker of random crops
    would itself look like an artefact).
    """

    def __init__(self, rows: Sequence[dict], path_of: Callable[[dict], Path], image_size: int,
                 clip_length: int, augment: Callable | None = None) -> None:
        if clip_length < 1:
            raise ValueError(f"clip_length must be >= 1, got {clip_length}")
        tracks: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for r in rows:
            tracks[(r["video"], r["track"])].append(r)
        self.clips: list[list[dict]] = []
        for key in sorted(tracks):
            track = sorted(tracks[key], key=lambda r: r["frame"])
            self.clips += [track[i:i + clip_length] for i in range(0, len(track), clip_length)]
        self.path_of = path_of
        self.image_size = image_size
        self.clip_length = clip_length
        self.augment = augment
        self.augment_key: tuple[int, int] = (0, 0)  # (seed, epoch), set by the trainer
        self.units = [unit_meta(c[0]) for c in self.clips]
        self.labels = [c[0]["label"] for c in self.clips]
        self.pair_keys = [(c[0].get("identity", ""), c[0]["frame"], c[0]["track"])
                          for c in self.clips]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        frames = [load_face(self.path_of(r), self.image_size) for r in clip]
        if self.augment is not None:
            frames = self.augment.many(frames, (*self.augment_key, index))
        images = torch.zeros(self.clip_length, 3, self.image_size, self.image_size)
        for t, img in enumerate(frames):
            images[t] = to_tensor(img)
        mask = torch.zeros(self.clip_length, dtype=torch.bool)
        mask[: len(frames)] = True
        return {"image": images, "mask": mask, "label": float(self.labels[index]),
                "index": index}
