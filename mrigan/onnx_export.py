"""ONNX export of torch models and onnxruntime inference, shared by the generator
(:mod:`mrigan.inference`) and the detectors (:mod:`detectors.onnx_export`).

The optional packages ``onnx`` and ``onnxruntime`` (``pip install 'mrigan[onnx]'``) are imported
on first use; without them a one-line :class:`MissingExtraError` names the extra.

Export uses torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): it
needs nothing beyond torch and ``onnx``, so it works offline, and it exports the U-Net generator
and every frame detector here. (torch 2.14's default, the ``torch.export``-based exporter,
needs the ``onnxscript`` package; torch announces the TorchScript one will go, and its
deprecation warnings are silenced here.) Graphs use opset :data:`OPSET`, float32, with a
dynamic batch axis; the tracer's warnings about Python-level shape checks (InstanceNorm's
channel check) are silenced too, because :func:`max_abs_diff` then runs the exported graph at
another batch size against torch, and the export is refused when they differ.

An exported file carries a JSON header in the ONNX model's ``metadata_props`` under
:data:`METADATA_KEY` (what the model is, its input size, the model card), so the ``.onnx``
file alone is enough to use it; the JSON sidecar beside it (:func:`onnx_sidecar_path`) records
provenance and the parity measured at export.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrigan.checkpoint import CheckpointError
from mrigan.errors import MriganError
from mrigan.fileio import atomic_write_bytes, atomic_write_json, sha256_file

#: ONNX operator set of exported graphs (onnxruntime >= 1.14 runs it).
OPSET = 17
#: ``metadata_props`` key of the JSON header in exported files.
METADATA_KEY = "mrigan"
#: The largest |ONNX - torch| an export may show on its check inputs.
PARITY_LIMIT = 1e-4
EXTRA = "pip install 'mrigan[onnx]'"


class MissingExtraError(MriganError, ImportError):
    """An optional package (``onnx``, ``onnxruntime``) is not installed."""


class OutputExistsError(MriganError, FileExistsError):
    """An export would replace an existing file without being asked to."""


def require(name: str) -> Any:
    """Import the optional package ``name`` or raise :class:`MissingExtraError` naming the extra."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingExtraError(f"ONNX needs the optional package {name}: {EXTRA}") from exc


def onnx_sidecar_path(model: str | os.PathLike) -> Path:
    """``gen.onnx`` -> ``gen.onnx.json`` (never the ``gen.json`` of a ``gen.safetensors``)."""
    model = Path(model)
    return model.with_name(model.name + ".json")


def module_to_onnx(module: torch.nn.Module, example: torch.Tensor, *, input_name: str,
                   output_names: tuple[str, ...], header: dict[str, Any]) -> bytes:
    """``module`` (eval mode, CPU, float32) as a serialised ONNX model with a dynamic batch
    axis on its input and outputs, ``header`` stored under :data:`METADATA_KEY`."""
    onnx = require("onnx")
    buf = io.BytesIO()
    axes = {name: {0: "batch"} for name in (input_name, *output_names)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(legacy TorchScript-based ONNX export|"
                                                  r"feature will be removed|Constant folding|is set to train=True)")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        with torch.no_grad():
            torch.onnx.export(module, (example,), buf, dynamo=False, opset_version=OPSET,
                              input_names=[input_name], output_names=list(output_names),
                              dynamic_axes=axes, do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(header)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def read_onnx(path: str | os.PathLike) -> tuple[bytes, dict[str, Any]]:
    """The bytes and the header of an exported ``.onnx`` file, checked: a parseable ONNX model
    whose weights are all finite. Each failure is a :class:`CheckpointError` naming the file."""
    onnx = require("onnx")
    from onnx import numpy_helper

    path = Path(path)
    if not path.is_file():
        raise CheckpointError("no such ONNX file", path)
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for a bad file
        raise CheckpointError(f"not a valid ONNX model ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:200]})", path) from exc
    bad = [t.name for t, w in ((t, numpy_helper.to_array(t)) for t in model.graph.initializer)
           if w.dtype.kind == "f" and not np.isfinite(w).all()]
    if bad:
        raise CheckpointError(f"{len(bad)} weight tensor(s) hold NaN or inf, e.g. {bad[0]}", path)
    raw = {p.key: p.value for p in model.metadata_props}.get(METADATA_KEY)
    try:
        header = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"metadata '{METADATA_KEY}' is not valid JSON ({exc})", path) from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"metadata '{METADATA_KEY}' must be a JSON object", path)
    return data, header


class OnnxModel:
    """An onnxruntime session on the CPU, called like the torch module it was exported from:
    a float32 tensor in, its first output as a tensor out (:meth:`run` gives all outputs).

    Threads: ``torch.get_num_threads()`` at creation, so settings that keep torch to one thread
    (DataLoader workers, a shared machine) hold here too.
    """

    def __init__(self, model: bytes, *, header: dict[str, Any] | None = None,
                 source: str | os.PathLike | None = None) -> None:
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CheckpointError(f"onnxruntime cannot run this model ({type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:200]})", source) from exc
        self.header = dict(header or {})
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = tuple(o.name for o in self.session.get_outputs())

    @property
    def architecture(self) -> dict[str, Any]:
        """The header's architecture record (generators)."""
        return dict(self.header.get("architecture") or {})

    def run(self, x: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        """Every output by name for a float32 batch."""
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        feed = {self.input_name: np.ascontiguousarray(arr, dtype=np.float32)}
        return dict(zip(self.output_names, self.session.run(None, feed), strict=True))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(x)[self.output_names[0]])


def max_abs_diff(module: torch.nn.Module, model: OnnxModel, x: torch.Tensor) -> float:
    """The largest |ONNX - torch| over every output for the batch ``x``.

    ``module`` returns one tensor or a tuple in the order of ``model.output_names``."""
    with torch.no_grad():
        ref = module(x)
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    got = model.run(x)
    return max(float(np.abs(got[name] - r.float().numpy()).max())
               for name, r in zip(model.output_names, refs, strict=True))


def check_inputs(size: int, batch: int = 3, seed: int = 0) -> torch.Tensor:
    """Seeded uniform images in [0, 1], (batch, 3, size, size): the export's parity check."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g)


def checked_parity(module: torch.nn.Module, model: bytes, header: dict[str, Any], size: int,
                   source: str | os.PathLike) -> float:
    """|ONNX - torch| of a fresh export on 3 seeded images (a batch size other than the traced
    one, so a batch size baked into the graph shows); a difference above
    :data:`PARITY_LIMIT` is a bug in the export (RuntimeError), not a user error."""
    diff = max_abs_diff(module, OnnxModel(model, header=header, source=source),
                        check_inputs(size, batch=3, seed=1))
    if not diff <= PARITY_LIMIT:
        raise RuntimeError(f"ONNX export of {source} differs from PyTorch by {diff:.3g}")
    return diff


def export_record(source: str | os.PathLike, diff: float,
                  sha256: str | None = None) -> dict[str, Any]:
    """The sidecar's ``onnx`` (how it was exported, the parity measured) and ``exported_from``
    (the source file and its SHA-256: ``sha256`` when the caller hashed the bytes it read, else
    the file is hashed here) entries."""
    return {"onnx": {"opset": OPSET, "exporter": f"torch {torch.__version__} "
                     "torch.onnx.export(dynamo=False)", "dynamic_axes": "batch",
                     "runs_in": "float32", "parity_max_abs_diff_vs_torch": diff,
                     "parity_inputs": "3 seeded uniform-noise images"},
            "exported_from": {"path": str(source), "sha256": sha256 or sha256_file(source)}}


def check_output(out: str | os.PathLike, *, overwrite: bool = False) -> tuple[Path, Path]:
    """``out`` and its sidecar, if an export may write them: an ``.onnx`` name, not a folder,
    and (without ``overwrite``) neither file there yet. Called before any work is done."""
    out = Path(out)
    side = onnx_sidecar_path(out)
    if out.suffix != ".onnx":
        raise CheckpointError("the exported file must end in .onnx", out)
    if out.is_dir():
        raise CheckpointError("is a folder; give the .onnx file to write", out)
    for path in (out, side):
        if path.exists() and not overwrite:
            raise OutputExistsError("exists; pass --overwrite (overwrite=True) to replace it", path)
    return out, side


def write_onnx(out: str | os.PathLike, model: bytes, sidecar: dict[str, Any], *,
               overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``out`` (.onnx) and its sidecar atomically; an existing file is replaced only
    with ``overwrite`` (else :class:`OutputExistsError`, before anything is written)."""
    out, side = check_output(out, overwrite=overwrite)
    atomic_write_bytes(out, model)
    atomic_write_json(side, sidecar)
    return out, side
