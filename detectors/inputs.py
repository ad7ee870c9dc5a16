"""What a detector looks at, by name: ``plain`` face crops or their ``mri`` maps.

An :class:`InputAdapter` answers two questions, so training, evaluation and the analyst
pipeline run the same code for both methods of the paper:

* ``path_of(row)``: which file a dataset reads for a manifest row (the face crop, or its
  precomputed MRI);
* ``adapter(batch)``: what happens on the device before the model (nothing, or the
  MRI-GAN generator turning faces into MRIs on the fly).

Precomputed MRIs live in a cache folder that mirrors the manifest's image paths
(``<cache>/face/x.png`` is the MRI of ``<root>/face/x.png``). The cache records the SHA-256 of
the generator that filled it; a cache made by another generator is refused, because mixing
MRIs of two generators silently would invalidate an experiment.

Evaluation makes MRIs of faces it has never seen (face sets of labelled videos) with a
content-addressed cache instead (:class:`HashedMriInput`): the MRI of a face is stored under
``sha256(face PNG bytes + generator file sha256)``, so two faces with the same file name in
different sets never collide, a changed face or generator is simply a new key, and one cache
folder can serve any number of face sets. The cache is an output folder: it may never lie in
an input (face set) folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from detectors.config import DetectorInputConfig
from mrigan.errors import MriganError
from mrigan.fileio import atomic_save_image, atomic_write_json, read_image, sha256_file
from mrigan.inference import MRIGenerator
from mrigan.outputs import check_output_dir
from mrigan.registry import Registry

_log = logging.getLogger(__name__)

CACHE_INFO = "mri_cache.json"


class InputError(MriganError, ValueError):
    """An input configuration that cannot work (missing generator, foreign cache, ...)."""


class InputAdapter:
    """``plain`` faces: read the crop, pass it through unchanged."""

    name = "plain"

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def path_of(self, row: dict) -> Path:
        return self.root / row["image"]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def describe(self) -> dict:
        return {"name": self.name}


class ManifestMriInput(InputAdapter):
    """Ground-truth MRIs from the manifest: an upper bound only (they reveal the label)."""

    name = "mri"

    def path_of(self, row: dict) -> Path:
        return self.root / row["mri"]

    def describe(self) -> dict:
        return {"name": self.name, "source": "manifest ground truth"}


class CachedMriInput(InputAdapter):
    """MRIs read from a cache folder filled by :func:`precompute_mris`."""

    name = "mri"

    def __init__(self, root: str | os.PathLike, cache: str | os.PathLike) -> None:
        super().__init__(root)
        self.cache = Path(cache)

    def path_of(self, row: dict) -> Path:
        return cache_path(self.cache, row)

    def describe(self) -> dict:
        info = self.cache / CACHE_INFO
        gen = json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}
        return {"name": self.name, "source": "cache", "cache": str(self.cache),
                "generator": gen.get("generator"), "generator_sha256": gen.get("sha256")}


class GeneratorMriInput(InputAdapter):
    """MRIs made on the fly from the (augmented) faces by a loaded ``MRIGenerator``."""

    name = "mri"

    def __init__(self, root: str | os.PathLike, generator, source: str | None = None) -> None:
        super().__init__(root)
        self.generator = generator
        self.source = source

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        device = images.device
        with torch.no_grad():
            if images.ndim == 5:  # clips (B, T, C, H, W)
                b, t = images.shape[:2]
                flat = self.generator.predict_tensor(images.flatten(0, 1).clamp(0, 1))
                return flat.to(device).reshape(b, t, *flat.shape[1:])
            return self.generator.predict_tensor(images.clamp(0, 1)).to(device)

    def describe(self) -> dict:
        return {"name": self.name, "source": "generator (on the fly)", "generator": self.source}


class HashedMriInput(InputAdapter):
    """MRIs read from a content-addressed cache (see the module docstring)."""

    name = "mri"

    def __init__(self, root: str | os.PathLike, cache: str | os.PathLike, keys: dict[str, str],
                 generator: str | None = None, generator_sha256: str | None = None) -> None:
        super().__init__(root)
        self.cache = Path(cache)
        self.keys = keys  # manifest image path -> content key
        self.generator = generator
        self.generator_sha256 = generator_sha256

    def path_of(self, row: dict) -> Path:
        return hashed_path(self.cache, self.keys[row["image"]])

    def describe(self) -> dict:
        return {"name": self.name, "source": "content-hash cache", "cache": str(self.cache),
                "generator": self.generator, "generator_sha256": self.generator_sha256}


def content_key(face: str | os.PathLike, generator_sha256: str) -> str:
    """``sha256(face file bytes + generator sha256)``: the cache key of one face's MRI."""
    path = Path(face)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read face ({exc.strerror or exc})") from exc
    return hashlib.sha256(data + generator_sha256.encode("ascii")).hexdigest()


def hashed_path(cache: Path, key: str) -> Path:
    return cache / key[:2] / f"{key}.png"


def hashed_mri_input(generator_file: str | os.PathLike, root: str | os.PathLike,
                     rows: Sequence[dict], cache: str | os.PathLike, *,
                     device: str | torch.device = "cpu", batch_size: int = 32,
                     log=_log.info) -> HashedMriInput:
    """The MRIs of ``rows`` made by ``generator_file``, from (and into) the content-hash
    ``cache``; the generator is loaded only when some MRI is missing. Refuses a cache inside
    ``root``."""
    root, cache = Path(root), Path(cache)
    check_output_dir(cache, [root])
    if not Path(generator_file).is_file():
        raise InputError(f"{generator_file}: generator weights not found")
    gen_sha = sha256_file(generator_file)
    keys = {r["image"]: content_key(root / r["image"], gen_sha) for r in rows}
    missing = {k: img for img, k in keys.items() if not hashed_path(cache, k).is_file()}
    if missing:
        gen = load_generator(generator_file, device, batch_size)
        todo = list(missing.items())
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            mris = gen.predict([read_image(root / img) for _, img in chunk])
            for (key, _), mri in zip(chunk, mris, strict=True):
                arr = np.clip(np.rint(np.asarray(mri, dtype=np.float32) * 255.0), 0, 255)
                atomic_save_image(hashed_path(cache, key), arr.astype(np.uint8))
    log(f"MRI cache {cache}: {len(missing)} made, {len(keys) - len(missing)} reused "
        f"(generator {generator_file}, sha256 {gen_sha[:12]}...)")
    return HashedMriInput(root, cache, keys, str(generator_file), gen_sha)


def cache_path(cache: Path, row: dict) -> Path:
    return (cache / row["image"]).with_suffix(".png")


def load_generator(path: str | os.PathLike, device: str | torch.device = "auto",
                   batch_size: int = 32):

    return MRIGenerator.load(path, device=device, batch_size=batch_size)


def precompute_mris(generator, root: str | os.PathLike, rows: Sequence[dict],
                    cache: str | os.PathLike, *, generator_file: str | os.PathLike | None = None,
                    batch_size: int = 32, log=_log.info) -> dict[str, int]:
    """Write the MRI of every row's face into ``cache`` (only the missing ones: resumable).

    MRIs are made at the face file's own size (the generator resizes internally) and stored as
    ``round(MRI * 255)`` RGB PNGs. Returns counts ``{"written", "present", "failed"}``;
    unreadable faces are skipped, counted and named in the log.
    """
    root, cache = Path(root), Path(cache)
    info_path = cache / CACHE_INFO
    sha = sha256_file(generator_file) if generator_file else None
    if info_path.is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if sha and info.get("sha256") and info["sha256"] != sha:
            raise InputError(
                f"{cache}: this MRI cache was made by generator {info.get('generator')} "
                f"(sha256 {info['sha256'][:12]}...), not {generator_file}; use another "
                f"input.mri_cache folder")
    else:
        atomic_write_json(info_path, {"generator": str(generator_file) if generator_file else None,
                                      "sha256": sha, "root": str(root)})
    counts = {"written": 0, "present": 0, "failed": 0}
    todo = []
    for r in rows:
        if cache_path(cache, r).is_file():
            counts["present"] += 1
        else:
            todo.append(r)
    for start in range(0, len(todo), batch_size):
        faces, keep = [], []
        for r in todo[start:start + batch_size]:
            try:
                faces.append(read_image(root / r["image"]))
                keep.append(r)
            except (OSError, ValueError) as exc:
                counts["failed"] += 1
                log(f"skipped {root / r['image']}: {exc}")
        if not faces:
            continue
        mris = generator.predict(faces)
        for r, mri in zip(keep, mris, strict=True):
            arr = np.clip(np.rint(np.asarray(mri, dtype=np.float32) * 255.0), 0, 255)
            atomic_save_image(cache_path(cache, r), arr.astype(np.uint8))
            counts["written"] += 1
    return counts


#: What a detector looks at, chosen by ``input.name`` in the config.
INPUTS = Registry("detector input")


def build_input(cfg: DetectorInputConfig, root: str | os.PathLike, *, device: str | torch.device = "cpu",
                rows: Sequence[dict] = (), log=_log.info) -> InputAdapter:
    """The adapter for ``cfg``; with an MRI cache, fill in the MRIs missing for ``rows`` first."""
    try:
        builder = INPUTS.get(cfg.name)
    except KeyError as exc:
        raise InputError(exc.args[0]) from None
    return builder(cfg, root, device=device, rows=rows, log=log)


@INPUTS.register("plain")
def _plain_input(cfg: DetectorInputConfig, root, *, device, rows, log) -> InputAdapter:
    """The face crops themselves."""
    return InputAdapter(root)


@INPUTS.register("mri")
def _mri_input(cfg: DetectorInputConfig, root, *, device, rows, log) -> InputAdapter:
    """MRIs of the faces: from a cache (filled by a generator), on the fly, or the manifest's."""
    if cfg.manifest_mri:
        log("input: ground-truth MRIs from the manifest (upper bound: they reveal the label)")
        return ManifestMriInput(root)
    if cfg.mri_cache:
        missing = [r for r in rows if not cache_path(Path(cfg.mri_cache), r).is_file()]
        if missing:
            if not cfg.generator:
                raise InputError(
                    f"{cfg.mri_cache}: {len(missing)} MRI(s) missing (e.g. "
                    f"{cache_path(Path(cfg.mri_cache), missing[0])}) and no input.generator to "
                    f"make them")
            gen = load_generator(cfg.generator, device, cfg.generator_batch)
            counts = precompute_mris(gen, root, missing, cfg.mri_cache,
                                     generator_file=cfg.generator,
                                     batch_size=cfg.generator_batch, log=log)
            log(f"MRI cache {cfg.mri_cache}: {counts}")
        return CachedMriInput(root, cfg.mri_cache)
    if cfg.generator:
        return GeneratorMriInput(root, load_generator(cfg.generator, device, cfg.generator_batch),
                                 cfg.generator)
    raise InputError("input.name=mri needs input.generator (MRIs on the fly), input.mri_cache "
                     "(+ generator to fill it), or input.manifest_mri=true (ground truth)")
