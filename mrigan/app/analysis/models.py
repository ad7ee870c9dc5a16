"""The models an analysis runs: the MRI-GAN generator, an optional detector (with its Grad-CAM
or LIME explanation),
their provenance, and the checks that keep non-finite numbers out of verdicts.

A generator whose weights hold NaN/inf is refused before any input is read
(:class:`NonFiniteModelError`, naming the file). Outputs are checked per batch too: a
non-finite MRI or P(fake) raises the same error, which the pipeline records as that input's
``error`` skip - never a verdict computed from NaN.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from detectors import inference
from detectors.explain import explain_faces
from detectors.explain import overlay as cam_overlay
from detectors.inference import Detector
from detectors.lime_explain import LimeConfig, lime_faces, lime_overlay
from mrigan.errors import MriganError
from mrigan.fileio import read_image, sha256_file
from mrigan.inference import MRIGenerator
from mrigan.model_card import DEFAULT_GENERATOR


class NonFiniteModelError(MriganError, ValueError):
    """A generator or detector whose weights or outputs are NaN or infinite."""


class MissingWeightsError(MriganError, ValueError):
    """A weights file to load that does not exist."""


def describe_model(model: Any, path: Any = None) -> str:
    """What to call a model in a message: its file when known, else its type."""
    if isinstance(path, (str, os.PathLike)):
        return os.fspath(path)
    source = getattr(model, "metadata", {}).get("source") if hasattr(model, "metadata") else None
    return str(source) if source else type(model).__name__


def load_generator(generator: Any, device: str = "auto", precision: str = "fp32",
                   backend: str = "auto"):
    """An ``MRIGenerator`` from a path (``.safetensors`` export, checkpoint or ``.onnx``), run by
    ``backend`` (:meth:`MRIGenerator.load`), or as given."""
    if isinstance(generator, (str, os.PathLike)):
        return MRIGenerator.load(generator, device=device, precision=precision, backend=backend)
    if not hasattr(generator, "predict") or not hasattr(generator, "image_size"):
        raise TypeError("generator must be a weights path or an object with predict() and "
                        f"image_size (an MRIGenerator), got {type(generator).__name__}")
    return generator


def resolve_weights(generator: str | os.PathLike | None, detector: str | os.PathLike | None,
                    ) -> tuple[Path, Path | None]:
    """The weights files an analysis will load, checked before any model is: ``generator``
    ``None`` is the shipped default generator. Raises :class:`MissingWeightsError` naming a
    missing file."""
    if generator is None:
        generator = DEFAULT_GENERATOR
        if not generator.is_file():
            raise MissingWeightsError("the default generator's weights are missing from this "
                              "installation (reinstall mrigan, or give --generator)", generator)
    paths = (Path(generator), None if detector is None else Path(detector))
    for path in paths:
        if path is not None and not path.is_file():
            raise MissingWeightsError("no such weights file", path)
    return paths


def load_detector(detector: Any, device: str, precision: str = "fp32"):
    """A ``detectors.inference.Detector`` from a weights path, or an object as given."""
    if isinstance(detector, (str, os.PathLike)):
        return inference.load_detector(detector, device=device, precision=precision)
    if not hasattr(detector, "predict_proba"):
        raise TypeError("detector must be a weights path or an object with predict_proba(faces=, "
                        f"mris=), got {type(detector).__name__}")
    return detector


def check_finite_weights(model: Any, name: str) -> None:
    """Refuse a torch model (``.net`` of an MRIGenerator, ``.model`` of a Detector) holding a
    non-finite parameter or buffer; objects without one are checked by their outputs only."""
    net = getattr(model, "net", None)
    if net is None:
        net = getattr(model, "model", None)
    if net is None or not hasattr(net, "state_dict"):
        return
    for key, tensor in net.state_dict().items():
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            bad = int((~tensor.isfinite()).sum())
            raise NonFiniteModelError(
                f"weights hold {bad} non-finite value(s) (NaN/inf) in {key}: these weights "
                "cannot give a verdict; re-export them from a checkpoint saved before training "
                "diverged", name)


def file_info(path: Any, obj: Any) -> dict[str, Any]:
    """Provenance recorded in results.json: the path (or type) and the file's SHA-256."""
    info: dict[str, Any] = {"path": str(path) if isinstance(path, (str, os.PathLike))
                            else type(obj).__name__}
    if isinstance(path, (str, os.PathLike)) and Path(path).is_file():
        info["sha256"] = sha256_file(path)
    return info


def as_mri_array(mris: Any, n: int, name: str = "generator") -> np.ndarray:
    """Generator output (tensor or array, NCHW or NHWC) -> float32 (N, H, W, 3) in [0, 1].

    Non-finite values raise :class:`NonFiniteModelError` naming ``name`` (clipping would keep a
    NaN and turn an infinity into a confident 0 or 1)."""
    if hasattr(mris, "detach"):
        mris = mris.detach().float().cpu().numpy()
    arr = np.asarray(mris, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[0] != n:
        raise ValueError(f"generator returned shape {arr.shape} for {n} faces")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).reshape(n, -1).any(axis=1).sum())
        raise NonFiniteModelError(f"the generator returned non-finite MRIs (NaN/inf) for {bad} "
                                  f"of {n} face(s)", name)
    if arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.clip(arr, 0.0, 1.0)


def fake_probabilities(detector: Any, crops: list[np.ndarray], mris: np.ndarray,
                       name: str = "detector") -> np.ndarray:
    """The detector's P(fake) per face, checked for shape, range and finiteness."""
    probs = np.asarray(detector.predict_proba(faces=crops, mris=mris), dtype=np.float64)
    if probs.shape != (len(crops),):
        raise ValueError(f"detector returned {probs.shape} probabilities for {len(crops)} faces")
    if not np.isfinite(probs).all():
        raise NonFiniteModelError(f"the detector returned non-finite P(fake) for "
                                  f"{int((~np.isfinite(probs)).sum())} of {len(crops)} face(s)",
                                  name)
    return probs


def gradcam_overlays(detector: Any, crops: list[np.ndarray],
                     mris: np.ndarray) -> list[np.ndarray] | None:
    """Grad-CAM of a frame detector (:func:`detectors.explain.explain_faces`) drawn over each
    face crop; the MRI is pixel-aligned with the face, so an MRI detector's map is drawn there
    too. ``None`` for detectors it cannot explain (clip models, objects without a backbone)."""
    model = getattr(detector, "model", None)
    if model is None or getattr(model, "temporal", False) or not hasattr(model, "backbone"):
        return None
    heat, _probs = explain_faces(detector, faces=crops, mris=mris)
    return [cam_overlay(face, h) for face, h in zip(crops, heat, strict=True)]


def explanation_overlays(detector: Any, crops: list[np.ndarray], mris: np.ndarray,
                         method: str, lime: LimeConfig | None = None) -> list[np.ndarray] | None:
    """The ``report.explain`` overlay of each face: ``gradcam`` (:func:`gradcam_overlays`),
    ``lime`` (:func:`detectors.lime_explain.lime_faces`, seeded by ``lime.seed``, drawn red
    towards fake / green towards real over the face crop; an MRI detector's map is computed on
    the MRI over the face's superpixels) or ``none``. ``None`` when there is nothing to draw:
    ``none``, clip models, or detectors that are not a loaded ``Detector`` for LIME."""
    if method == "none":
        return None
    if method == "gradcam":
        return gradcam_overlays(detector, crops, mris)
    if method != "lime":
        raise ValueError(f"unknown explanation {method!r}: gradcam, lime or none")
    model = getattr(detector, "model", None)
    if not isinstance(detector, Detector) or getattr(model, "temporal", False):
        return None
    maps, _probs = lime_faces(detector, faces=crops, mris=mris, cfg=lime or LimeConfig())
    return [lime_overlay(face, m) for face, m in zip(crops, maps, strict=True)]


def artifact_map(face_image: Any, generator: Any, *, device: str = "auto") -> np.ndarray:
    """The MRI-GAN artifact map (HxWx3 float32 in [0, 1]) of one face crop.

    ``face_image``: an HxWx3 uint8 RGB array or an image file path, already cropped to the face
    (use ``analyze`` for whole frames and videos). It is resized to the generator's input size
    and the map is returned at that size. ``generator``: a weights path or an ``MRIGenerator``.
    """
    import cv2

    face = (read_image(face_image) if isinstance(face_image, (str, os.PathLike))
            else np.asarray(face_image))
    if face.ndim != 3 or face.shape[2] != 3 or face.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB face, got {face.shape} {face.dtype}")
    gen = load_generator(generator, device)
    name = describe_model(gen, generator)
    check_finite_weights(gen, name)
    size = int(gen.image_size)
    if face.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if max(face.shape[:2]) > size else cv2.INTER_LINEAR
        face = cv2.resize(face, (size, size), interpolation=interp)
    return as_mri_array(gen.predict([face]), 1, name)[0]


def mri_stats(mri: np.ndarray) -> dict[str, float]:
    """Mean, median, 90th/99th percentile and max of one MRI (all channels)."""
    p50, p90, p99 = np.percentile(mri, [50, 90, 99])
    return {"mean": float(mri.mean()), "p50": float(p50), "p90": float(p90),
            "p99": float(p99), "max": float(mri.max())}
