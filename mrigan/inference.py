"""Trained MRI-GAN generator: faces in, MRIs (artifact maps) in [0, 1] out.

::

    from mrigan import MRIGenerator
    gen = MRIGenerator.load("runs/mri_gan/generator.safetensors")   # device="auto"
    mri = gen.predict(face)          # face: HxWx3 uint8 array -> HxWx3 float32 array in [0, 1]

``predict`` accepts a uint8 (or [0, 1] float) HxWx3 numpy array, a PIL image, a (3, H, W) or
(N, 3, H, W) tensor (uint8 or [0, 1] float), an NxHxWx3 array, or a list of any of these. The
result mirrors the input: numpy/PIL in -> float32 numpy HxWx3 (NxHxWx3 for a stacked batch);
tensor in -> float32 tensor (3, H, W) / (N, 3, H, W) on the input's device; list in -> list.
Faces whose size differs from the generator's ``image_size`` are resized to it (bilinear,
antialiased) and the MRI is resized back, so output and input have the same height and width.

Weights: an exported ``.safetensors`` with its JSON sidecar (``mrigan export-generator``), a
training checkpoint (``runs/<name>/checkpoints/best.pt``), the paper's released
``GeneratorUNet`` checkpoint (``architecture={"name": "mrigan", "image_size": 256}``), or an
``.onnx`` export (``mrigan export-onnx``).

Backends: ``backend="torch"`` runs the weights in PyTorch; ``backend="onnx"`` runs them in
onnxruntime on the CPU in float32 (optional extra ``mrigan[onnx]``): an ``.onnx`` file as it is,
other weights exported in memory first (:func:`generator_to_onnx`, about a second).
``"auto"`` (the default): onnx for ``.onnx`` files, torch otherwise.

Loading validates before it builds anything: the sidecar must be a JSON object, the
architecture a known generator name with known keys and values inside :data:`ARCHITECTURE_LIMITS`
(an ``ngf`` of 100000 would ask for terabytes), the weights' names and shapes must match that
architecture (compared on PyTorch's ``meta`` device, which allocates nothing), and every weight
must be finite. Each failure is a :class:`mrigan.checkpoint.CheckpointError` naming the file.
Faces with NaN/inf values, and a generator that outputs them, are an
:class:`mrigan.errors.InputValueError`, never an MRI.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mrigan import __version__
from mrigan.checkpoint import CheckpointError, load_checkpoint, load_weights
from mrigan.device import autocast, resolve_device, resolve_precision
from mrigan.errors import InputTypeError, InputValueError
from mrigan.fileio import (
    atomic_write_bytes,
    atomic_write_json,
    portable_path,
    portable_paths,
    sha256_file,
)
from mrigan.model_card import validate_card
from mrigan.models import (
    GENERATORS,
    UnitRangeGenerator,
    convert_reference_state_dict,
    generator_from_architecture,
)
from mrigan.onnx_export import (
    OnnxModel,
    check_inputs,
    check_output,
    checked_parity,
    export_record,
    module_to_onnx,
    onnx_sidecar_path,
    read_onnx,
    write_onnx,
)
from mrigan.perceptual import DEFAULT_METRIC
from mrigan.pretrained import mismatch_with_installed

log = logging.getLogger(__name__)

EXPORT_FORMAT = "mrigan-generator/1"
ONNX_FORMAT = "mrigan-generator-onnx/1"
BACKENDS = ("auto", "torch", "onnx")
_TRAIN_FORMAT = "mrigan-gan-checkpoint/1"


def generator_metric(metadata: dict[str, Any]) -> str:
    """``mri_metric`` of a generator file's metadata (sidecar / header / training config)."""
    if metadata.get("mri_metric"):
        return str(metadata["mri_metric"])
    for key in ("training_config", "config"):
        config = metadata.get(key)
        data = config.get("data") if isinstance(config, dict) else None
        if isinstance(data, dict) and data.get("mri_metric"):
            return str(data["mri_metric"])
    return DEFAULT_METRIC


def sidecar_path(weights: str | os.PathLike) -> Path:
    """``gen.safetensors`` -> ``gen.json``."""
    return Path(weights).with_suffix(".json")


class MRIGenerator:
    """A generator in eval mode on one device, with input/output conversions around it.

    ``generator``: a torch module, or an :class:`OnnxModel` (``backend`` "onnx": onnxruntime's
    CPU provider in float32, whatever ``device`` and ``precision`` say)."""

    def __init__(self, generator: UnitRangeGenerator | OnnxModel, *,
                 device: str | torch.device = "auto", precision: str = "fp32",
                 batch_size: int = 32, metadata: dict[str, Any] | None = None) -> None:
        self.batch_size = int(batch_size)
        self.metadata = dict(metadata or {})
        self.backend = "onnx" if isinstance(generator, OnnxModel) else "torch"
        if self.backend == "onnx":
            self.device, self.precision, self.net = torch.device("cpu"), "fp32", generator
            return
        self.device = resolve_device(device)
        #: resolved inference precision (``auto`` on a CPU: fp32 on every CPU, see
        #: :func:`mrigan.device.resolve_precision`), as recorded by analyses and evaluations
        self.precision = resolve_precision(self.device, precision)
        self.net = generator.to(self.device).eval()
        self.net.requires_grad_(False)

    @property
    def image_size(self) -> int:
        """Side of the square faces the generator was trained on (inputs are resized to it)."""
        return int(self.net.architecture["image_size"])

    @property
    def architecture(self) -> dict[str, Any]:
        return dict(self.net.architecture)

    @property
    def mri_metric(self) -> str:
        """The perceptual metric whose maps this generator predicts (its sidecar's or training
        config's ``mri_metric``; files made before the metric was a choice: ``ssim``)."""
        return generator_metric(self.metadata)

    # --- loading -------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "auto", *,
             architecture: dict[str, Any] | None = None, precision: str = "fp32",
             batch_size: int = 32, backend: str = "auto") -> MRIGenerator:
        """Restore a generator from ``.safetensors`` (+ sidecar), a ``.pt`` checkpoint or an
        ``.onnx`` export; ``backend``: auto | torch | onnx (see the module docstring).

        ``architecture`` is needed only for bare state dicts that do not record it.
        """
        path = Path(path)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if path.suffix == ".onnx":
            if backend == "torch":
                raise CheckpointError("an .onnx file runs in onnxruntime: use backend='onnx' "
                                      "(or 'auto'), or load the .safetensors export", path)
            return cls._load_onnx(path, batch_size)
        state, arch, metadata = _read_generator_file(path)
        if not (architecture or arch):
            raise CheckpointError(
                f"{path}: does not record the generator architecture; pass "
                f"architecture={{'name': 'mrigan', 'image_size': 256}} (or export it with "
                f"`mrigan export-generator`)")
        side = sidecar_path(path)
        arch_file = (side if architecture is None and path.suffix == ".safetensors"
                     and side.is_file() and "architecture" in side.read_text(encoding="utf-8",
                                                                             errors="replace")
                     else path)
        arch = validate_architecture(architecture or arch, arch_file)
        if "model_card" in metadata:
            validate_card(metadata["model_card"], side)
        other = mismatch_with_installed(arch.get("encoder_source"))
        if other:
            log.warning("%s: encoder %s", path, other)
        state = convert_reference_state_dict(state)
        check_state_fits(state, arch, path)
        net = generator_from_architecture(arch)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit architecture {arch}: {exc}") from exc
        if backend == "onnx":  # exported in memory, run by onnxruntime
            data, header = generator_to_onnx(net.eval(), metadata)
            net = OnnxModel(data, header=header, source=path)
        return cls(net, device=device, precision=precision, batch_size=batch_size,
                   metadata={**metadata, "source": str(path)})

    @classmethod
    def _load_onnx(cls, path: Path, batch_size: int) -> MRIGenerator:
        """An ``mrigan export-onnx`` file: its header says what it is; the sidecar beside it
        (``gen.onnx.json``), when present, adds provenance and the model card."""
        data, header = read_onnx(path)
        if header.get("format") != ONNX_FORMAT:
            raise CheckpointError(f"not an exported MRI-GAN generator (format "
                                  f"{header.get('format')!r}, expected {ONNX_FORMAT!r})", path)
        arch = validate_architecture(header.get("architecture"), path)
        side = onnx_sidecar_path(path)
        metadata = {**header, **(_read_json_object(side, "sidecar") if side.is_file() else {})}
        if "model_card" in metadata:
            validate_card(metadata["model_card"], side if side.is_file() else path)
        model = OnnxModel(data, header={**header, "architecture": arch}, source=path)
        size = arch["image_size"]
        if list(model.session.get_inputs()[0].shape[1:]) != [3, size, size]:
            raise CheckpointError(f"the graph's input {model.session.get_inputs()[0].shape} "
                                  f"does not take (batch, 3, {size}, {size}) faces", path)
        return cls(model, batch_size=batch_size, metadata={**metadata, "source": str(path)})

    # --- prediction ----------------------------------------------------------------------

    @torch.inference_mode()
    def predict_tensor(self, faces: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float faces in [0, 1] (any device) -> (N, 3, H, W) MRIs in [0, 1] on
        the generator's device; resized to ``image_size`` and back when H, W differ."""
        if faces.dim() != 4 or faces.shape[1] != 3:
            raise InputValueError(f"expected (N, 3, H, W) faces, got shape {tuple(faces.shape)}")
        size = self.image_size
        h, w = faces.shape[-2:]
        outs = []
        for i in range(0, faces.shape[0], self.batch_size):
            x = faces[i:i + self.batch_size].to(self.device, torch.float32)
            if (h, w) != (size, size):
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                  antialias=True)
            with autocast(self.device, self.precision):
                y = self.net(x).float()
            if not bool(torch.isfinite(y).all()):
                raise InputValueError(
                    f"generator {self.metadata.get('source', '')} produced non-finite MRIs "
                    "(NaN/inf): its weights or these faces are broken")
            if (h, w) != (size, size):
                y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False,
                                  antialias=True).clamp_(0.0, 1.0)
            outs.append(y)
        if not outs:
            return faces.new_zeros((0, 3, h, w), dtype=torch.float32, device=self.device)
        return torch.cat(outs)

    def predict(self, faces: Any) -> Any:
        """MRIs in [0, 1] for one face or a batch; the return type mirrors the input (see the
        module docstring)."""
        if isinstance(faces, (list, tuple)):
            return self._predict_list(faces)
        if isinstance(faces, torch.Tensor):
            single = faces.dim() == 3
            batch = _tensor_to_unit(faces[None] if single else faces, "faces")
            out = self.predict_tensor(batch).to(faces.device)
            return out[0] if single else out
        arr = _as_array(faces, "faces")
        single = arr.ndim == 3
        batch = torch.from_numpy(np.ascontiguousarray((arr[None] if single else arr)
                                                      .transpose(0, 3, 1, 2)))
        out = self.predict_tensor(_tensor_to_unit(batch, "faces")).cpu().numpy()
        out = np.ascontiguousarray(out.transpose(0, 2, 3, 1))
        return out[0] if single else out

    __call__ = predict

    def _predict_list(self, faces: Sequence[Any]) -> list[Any]:
        """Items are converted one by one, grouped by size, run in batches, given back in order."""
        units: list[torch.Tensor] = []
        for i, face in enumerate(faces):
            if isinstance(face, torch.Tensor):
                if face.dim() != 3:
                    raise InputValueError(f"faces[{i}]: expected a (3, H, W) tensor, got "
                                          f"{tuple(face.shape)}")
                units.append(_tensor_to_unit(face[None], f"faces[{i}]")[0])
            else:
                arr = _as_array(face, f"faces[{i}]")
                if arr.ndim != 3:
                    raise InputValueError(f"faces[{i}]: expected one HxWx3 face, got shape "
                                          f"{arr.shape}")
                units.append(_tensor_to_unit(torch.from_numpy(
                    np.ascontiguousarray(arr.transpose(2, 0, 1)))[None], f"faces[{i}]")[0])
        results: list[Any] = [None] * len(units)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, u in enumerate(units):
            groups.setdefault(tuple(u.shape[-2:]), []).append(i)
        for idx in groups.values():
            out = self.predict_tensor(torch.stack([units[i] for i in idx]))
            for j, i in enumerate(idx):
                if isinstance(faces[i], torch.Tensor):
                    results[i] = out[j].to(faces[i].device)
                else:
                    results[i] = np.ascontiguousarray(out[j].cpu().numpy().transpose(1, 2, 0))
        return results


# --- input conversion (the I/O edge) ---------------------------------------------------------


def _as_array(face: Any, what: str) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None  # noqa: N806
    if Image is not None and isinstance(face, Image.Image):
        face = np.asarray(face.convert("RGB"))
    if not isinstance(face, np.ndarray):
        raise InputTypeError(f"{what}: expected a numpy array, PIL image or tensor, got "
                             f"{type(face).__name__}")
    if face.ndim not in (3, 4) or face.shape[-1] != 3:
        raise InputValueError(f"{what}: expected HxWx3 (or NxHxWx3) RGB, got shape {face.shape}")
    if face.dtype != np.uint8 and not np.issubdtype(face.dtype, np.floating):
        raise InputTypeError(f"{what}: expected uint8 or float pixels, got {face.dtype}")
    return face


def _tensor_to_unit(x: torch.Tensor, what: str) -> torch.Tensor:
    """uint8 -> /255; floats must already be in [0, 1] (a clear error otherwise)."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise InputValueError(f"{what}: expected 3-channel (3, H, W) / (N, 3, H, W) tensors, "
                              f"got shape {tuple(x.shape)}")
    if 0 in x.shape[-2:]:
        raise InputValueError(f"{what}: empty image ({x.shape[-1]}x{x.shape[-2]} pixels)")
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise InputTypeError(f"{what}: expected uint8 or float values, got {x.dtype}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise InputValueError(f"{what}: {int((~torch.isfinite(x)).sum())} non-finite value(s) "
                              "(NaN or inf) in the faces")
    if x.numel() and (x.min() < 0.0 or x.max() > 1.0):
        raise InputValueError(f"{what}: float faces must be in [0, 1] (got "
                         f"[{float(x.min()):.3g}, {float(x.max()):.3g}]); pass uint8 for 0..255")
    return x.float()


# --- validating architectures and weights ---------------------------------------------------

#: Allowed architecture keys and their ranges (inclusive). Sizes beyond these are refused
#: before anything is built: ngf 256 at 256 px is already ~870M parameters.
ARCHITECTURE_LIMITS: dict[str, tuple[float, float]] = {
    "image_size": (4, 4096), "ngf": (1, 256), "in_channels": (3, 3), "out_channels": (3, 3),
    "dropout": (0.0, 1.0), "depth": (2, 12),
}


def validate_architecture(arch: Any, path: str | os.PathLike) -> dict[str, Any]:
    """A generator architecture record checked against the registry and the limits."""
    if not isinstance(arch, dict):
        raise CheckpointError(f"architecture must be a JSON object, got {arch!r}", path)
    arch = dict(arch)
    name = arch.get("name")
    if not isinstance(name, str) or name not in GENERATORS.names():
        raise CheckpointError(f"architecture name {name!r} is not a known generator "
                              f"({', '.join(GENERATORS.names())})", path)
    unknown = sorted(set(arch) - {"name", "encoder_source", "prior", *ARCHITECTURE_LIMITS})
    if unknown:
        raise CheckpointError(f"architecture has unknown key(s) {unknown}", path)
    if not isinstance(arch.get("prior", False), bool):
        raise CheckpointError(f"architecture prior={arch['prior']!r} must be true or false", path)
    record = arch.get("encoder_source")
    if record is not None and not (isinstance(record, dict) and all(
            isinstance(k, str) and isinstance(v, str) and len(v) <= 200
            for k, v in record.items())):
        raise CheckpointError("architecture encoder_source must be null or an object of "
                              "short strings (the packaged weights' provenance)", path)
    if "image_size" not in arch:
        raise CheckpointError("architecture lacks image_size", path)
    for key, (lo, hi) in ARCHITECTURE_LIMITS.items():
        if key not in arch or (key == "depth" and arch[key] is None):
            continue
        value = arch[key]
        integral = key != "dropout"
        ok_type = (isinstance(value, int) if integral else isinstance(value, (int, float)))
        if isinstance(value, bool) or not ok_type or not lo <= value <= hi:
            kind = "an integer" if integral else "a number"
            raise CheckpointError(f"architecture {key}={value!r} must be {kind} in "
                                  f"[{lo:g}, {hi:g}]", path)
    try:
        with torch.device("meta"):
            generator_from_architecture(arch)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"architecture {arch} cannot be built: {exc}", path) from exc
    return arch


def check_state_fits(state: dict[str, torch.Tensor], arch: dict[str, Any],
                     path: str | os.PathLike) -> None:
    """Names and shapes of ``state`` against ``arch`` (built on the meta device: no memory),
    then every weight finite."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in generator_from_architecture(arch)
                    .state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        raise CheckpointError(f"weights do not fit architecture {arch}: missing {missing[:5]}"
                              f"{'...' if len(missing) > 5 else ''}, unexpected {extra[:5]}"
                              f"{'...' if len(extra) > 5 else ''}", path)
    wrong = [f"{k} {got[k]} (expected {expected[k]})" for k in expected if got[k] != expected[k]]
    if wrong:
        raise CheckpointError(f"weights do not fit architecture {arch}: {len(wrong)} wrong "
                              f"shape(s), e.g. {wrong[0]}", path)
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{len(bad)} weight tensor(s) hold NaN or inf, e.g. {bad[0]}", path)


# --- reading and exporting weight files ------------------------------------------------------


def _read_generator_file(path: Path) -> tuple[dict[str, torch.Tensor], dict | None, dict]:
    """(state dict, architecture or None, metadata) from any supported generator file."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such generator file")
    if path.suffix == ".safetensors":
        state = load_weights(path)
        meta = _safetensors_metadata(path)
        side = sidecar_path(path)
        if side.is_file():
            meta = {**meta, **_read_json_object(side, "sidecar")}
        return state, meta.get("architecture"), meta
    ckpt = load_checkpoint(path)
    if ckpt.get("format") == _TRAIN_FORMAT:
        try:
            at_step = [h for h in ckpt.get("history", []) if h.get("step") == ckpt["step"]]
            meta = {"step": ckpt["step"], "eval_at_step": at_step[-1] if at_step else None,
                    "best_step": ckpt["best_step"], "best_mean_ssim": ckpt["best_mean_ssim"],
                    "config": ckpt["config"]}
            gen, arch = ckpt["generator"], ckpt["architecture"]["generator"]
        except (KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"training checkpoint lacks an entry ({exc!r})", path) from exc
        if not isinstance(gen, dict) or not all(isinstance(v, torch.Tensor) for v in gen.values()):
            raise CheckpointError("training checkpoint's generator is not a state dict", path)
        return gen, arch, meta
    for key in ("generator", "generator_state_dict", "state_dict"):
        if key in ckpt and isinstance(ckpt[key], dict):
            return ckpt[key], None, {}
    if all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt, None, {}
    raise CheckpointError(f"{path}: no generator weights found (keys: {sorted(ckpt)[:20]})")


def _read_json_object(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{what} is not UTF-8 text ({exc.reason})", path) from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{what} is not valid JSON ({exc})", path) from exc
    except RecursionError:
        raise CheckpointError(f"{what} is nested too deeply to be a sidecar", path) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{what} must be a JSON object, got {type(data).__name__}", path)
    return data


def _safetensors_metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        raw = (fh.metadata() or {}).get("mrigan")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"header metadata 'mrigan' is not valid JSON ({exc})", path) from exc
    except RecursionError:
        raise CheckpointError("header metadata 'mrigan' is nested too deeply", path) from None
    if not isinstance(data, dict):
        raise CheckpointError("header metadata 'mrigan' must be a JSON object", path)
    return data


def _run_dir(checkpoint: Path, config: Any) -> Path:
    """The folder of the run that wrote ``checkpoint``: ``<out_dir>/<name>`` of its config, else
    the folder above ``checkpoints/``."""
    if isinstance(config, dict) and config.get("out_dir") and config.get("name"):
        return (Path(config["out_dir"]) / str(config["name"])).resolve()
    return checkpoint.resolve().parent.parent


def _portable_config(config: Any, run_dir: Path) -> Any:
    """The training config as a shipped file records it: ``out_dir`` relative to the run
    (``..``) and every other absolute path relative to it or hashed (no folder of the machine
    that trained it goes into an exported file)."""
    if not isinstance(config, dict):
        return config
    out = portable_paths(config, run_dir)
    if config.get("out_dir") and config.get("name"):
        out["out_dir"] = ".."
    return out


def export_generator(checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                     dtype: torch.dtype | None = None,
                     card: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write a training checkpoint's generator as ``out`` (.safetensors) + ``out``.json.

    The architecture is stored in both the sidecar and the safetensors header, so either file
    alone is enough for :meth:`MRIGenerator.load`; the sidecar also records provenance (source
    checkpoint and its SHA-256, step, held-out mean SSIM, the training config). Paths in it are
    relative to the run folder, or hashed (:func:`mrigan.fileio.portable_path`): an exported
    file names no folder of the machine that trained it. ``dtype``
    (e.g. ``torch.float16``) stores the floating-point weights in that type (they are cast back
    to fp32 on load); ``card``: a model card (:mod:`mrigan.model_card`) for the sidecar.
    """
    from safetensors.torch import save as save_safetensors

    checkpoint, out = Path(checkpoint), Path(out)
    if out.suffix != ".safetensors":
        raise CheckpointError("the exported file must end in .safetensors", out)
    if out.is_dir():
        raise CheckpointError("is a folder; give the .safetensors file to write", out)
    state, arch, meta = _read_generator_file(checkpoint)
    if not arch:
        raise CheckpointError(f"{checkpoint}: not a training checkpoint recording its architecture")
    arch = validate_architecture(arch, checkpoint)
    check_state_fits(convert_reference_state_dict(state), arch, checkpoint)
    if card is not None:
        validate_card(card, out)
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
               .detach().cpu().contiguous() for k, v in state.items()}
    metric = generator_metric(meta)
    header = {"format": EXPORT_FORMAT, "architecture": arch,
              "image_size": arch["image_size"], "mri_metric": metric,
              "mrigan_version": __version__}
    atomic_write_bytes(out, save_safetensors(tensors, metadata={"mrigan": json.dumps(header)}))
    run_dir = _run_dir(checkpoint, meta.get("config"))
    sidecar = {**header,
               "input": "RGB faces, float (N, 3, S, S) in [0, 1]; MRIGenerator resizes to S",
               "output": ("MRI (N, 3, S, S) in [0, 1], ~ clip(1 - SSIM(real, face), 0, 1)"
                          if metric == DEFAULT_METRIC else
                          f"MRI (N, 3, S, S) in [0, 1], ~ the {metric} map of (real, face)"),
               "dtype": str(dtype or "as trained").replace("torch.", ""),
               "source_checkpoint": portable_path(checkpoint.resolve(), run_dir),
               "source_sha256": sha256_file(checkpoint),
               "step": meta.get("step"), "held_out_eval_at_step": meta.get("eval_at_step"),
               "best_step": meta.get("best_step"), "best_mean_ssim": meta.get("best_mean_ssim"),
               "training_config": _portable_config(meta.get("config"), run_dir)}
    if card is not None:
        sidecar["model_card"] = portable_paths(card, run_dir)
    atomic_write_json(sidecar_path(out), sidecar)
    return out, sidecar_path(out)


def generator_to_onnx(net: UnitRangeGenerator,
                      metadata: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """A generator (CPU, float32, eval mode) as ONNX bytes, input ``faces`` (batch, 3, S, S) in
    [0, 1], output ``mri`` of the same shape, and its header (architecture, model card)."""
    arch = dict(net.architecture)
    header = {"format": ONNX_FORMAT, "architecture": arch, "image_size": arch["image_size"],
              "mrigan_version": __version__,
              "input": "faces: float32 (batch, 3, S, S) RGB in [0, 1]",
              "output": "mri: float32 (batch, 3, S, S) in [0, 1], ~ clip(1 - SSIM(real, face), 0, 1)"}
    if "model_card" in metadata:
        header["model_card"] = metadata["model_card"]
    data = module_to_onnx(net, check_inputs(arch["image_size"], batch=2), input_name="faces",
                          output_names=("mri",), header=header)
    return data, header


def export_generator_onnx(source: str | os.PathLike, out: str | os.PathLike, *,
                          overwrite: bool = False) -> tuple[Path, Path, float]:
    """Write the generator of ``source`` (any file :meth:`MRIGenerator.load` reads) as ``out``
    (.onnx) + ``out``.json, after checking it against PyTorch on 3 seeded images at another
    batch size than the traced one; returns both paths and that largest |ONNX - torch|.

    The sidecar keeps the source's sidecar (architecture, provenance, model card) and adds the
    ONNX facts; an existing ``out`` is replaced only with ``overwrite``."""
    source = Path(source)
    check_output(out, overwrite=overwrite)
    gen = MRIGenerator.load(source, "cpu", backend="torch")
    data, header = generator_to_onnx(gen.net, gen.metadata)
    diff = checked_parity(gen.net, data, header, gen.image_size, source)
    sidecar = {**{k: v for k, v in gen.metadata.items() if k != "source"}, **header,
               **export_record(source, diff)}
    onnx_path, side = write_onnx(out, data, sidecar, overwrite=overwrite)
    return onnx_path, side, diff
