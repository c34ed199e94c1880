"""Self-describing checkpoints: weights plus the :class:`ModelSpec` that explains them.

A checkpoint is a ``torch.save`` file holding only tensors, strings and
numbers::

    {"geoseg_checkpoint": 1, "spec": "<JSON ModelSpec>", "state_dict": {...}}

It is always read with ``torch.load(weights_only=True)``: loading a checkpoint
never runs pickled code.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._files import sha256_file, staged
from ..classes import ISPRS, ClassTable
from ..errors import CheckpointError, GeosegIOError
from .models import build_model
from .spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

__all__ = [
    "FORMAT_VERSION",
    "import_state_dict",
    "init_checkpoint",
    "load_checkpoint",
    "model_hash",
    "read_spec",
    "save_checkpoint",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_KEY = "geoseg_checkpoint"


def save_checkpoint(model: nn.Module, spec: ModelSpec, path: str | os.PathLike[str]) -> Path:
    """Write `model`'s weights and `spec` to `path` (via a temporary file, then rename)."""
    path = Path(path)
    payload = {
        _KEY: FORMAT_VERSION,
        "spec": json.dumps(spec.to_dict()),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    with staged(path) as tmp:
        torch.save(payload, tmp)
    return path


def _torch_load(path: Path, *, mmap: bool = False) -> Any:
    if not path.exists():
        raise GeosegIOError(f"model file not found: {path}; pass --model PATH to a geoseg checkpoint")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise CheckpointError(f"{path.name} is not a readable safetensors file ({exc})") from exc
    not_torch = CheckpointError(
        f"{path.name} is not a geoseg checkpoint (not a PyTorch file); create one with "
        "`geoseg model init` or wrap trained weights with `geoseg model import`"
    )
    with open(path, "rb") as f:
        head = f.read(2)
    if not (zipfile.is_zipfile(path) or head[:1] == b"\x80"):  # torch.save zip, or a legacy pickle
        raise not_torch
    try:
        # mmap: reading only the spec of a zip checkpoint then touches none of its weights
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path.name} contains pickled Python objects, which geoseg never loads; "
            "save the model's state_dict() and wrap it with `geoseg model import`"
        ) from exc
    except Exception as exc:
        raise not_torch from exc


def _read(path: str | os.PathLike[str], *, mmap: bool = False) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    path = Path(path)
    obj = _torch_load(path, mmap=mmap)
    if not isinstance(obj, Mapping) or _KEY not in obj:
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise CheckpointError(
                f"{path.name} is a plain state_dict, not a geoseg checkpoint; wrap it with "
                f"`geoseg model import {path.name} --arch ... --encoder ... --in-channels N --mean ... --std ...`"
            )
        raise CheckpointError(
            f"{path.name} is not a geoseg checkpoint; create one with `geoseg model init` or `geoseg model import`"
        )
    version = obj[_KEY]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path.name} uses checkpoint format {version}; upgrade geoseg to read it")
    try:
        spec = ModelSpec.from_dict(json.loads(obj["spec"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path.name} has an invalid model description: {exc}") from exc
    return spec, dict(obj["state_dict"])


def read_spec(path: str | os.PathLike[str]) -> ModelSpec:
    """The :class:`ModelSpec` stored in a checkpoint."""
    return _read(path, mmap=True)[0]


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, ModelSpec]:
    """Build the model a checkpoint describes and load its weights (on CPU, eval mode).

    The model is built on the ``meta`` device (no memory, no random
    initialisation) and takes the loaded tensors as its own: peak memory is one
    copy of the weights, not two.
    """
    spec, state = _read(path)
    with torch.device("meta"):
        model = build_model(spec.arch, spec.encoder, in_channels=spec.in_channels, classes=spec.num_classes)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{Path(path).name}: weights do not match {spec.arch}/{spec.encoder}: {exc}") from exc
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:  # a tensor the state dict does not hold (a non-persistent buffer): build it for real
        model = build_model(spec.arch, spec.encoder, in_channels=spec.in_channels, classes=spec.num_classes)
        model.load_state_dict(state, strict=True)
    return model.eval(), spec


def model_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the checkpoint file: the model's identity in run reports."""
    return sha256_file(path)


def _default_norm(in_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = list(IMAGENET_MEAN[:in_channels]) + [sum(IMAGENET_MEAN) / 3] * max(0, in_channels - 3)
    std = list(IMAGENET_STD[:in_channels]) + [sum(IMAGENET_STD) / 3] * max(0, in_channels - 3)
    return tuple(mean), tuple(std)


def init_checkpoint(
    path: str | os.PathLike[str],
    *,
    arch: str = "unet",
    encoder: str = "resnet34",
    in_channels: int = 3,
    weights: str | None = None,
    seed: int = 0,
    bands: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    classes: ClassTable = ISPRS,
    tile_size: int = 512,
    gsd: float | None = None,
    name: str | None = None,
) -> ModelSpec:
    """Create a new, untrained (or ImageNet-initialised) checkpoint.

    Normalisation defaults to ImageNet statistics in 8-bit units (extra bands
    get the mean of the RGB statistics).
    """
    torch.manual_seed(seed)
    try:
        model = build_model(arch, encoder, in_channels=in_channels, classes=len(classes), encoder_weights=weights)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(str(exc).strip("'\"")) from exc
    except Exception as exc:  # downloading pretrained weights failed
        raise CheckpointError(
            f"cannot get {weights} weights for {encoder} ({type(exc).__name__}: {str(exc)[:120]}); "
            "connect to the internet or use --weights none"
        ) from exc
    dm, ds = _default_norm(in_channels)
    spec = ModelSpec(
        arch=arch,
        encoder=encoder,
        in_channels=in_channels,
        bands=tuple(bands) if bands else ModelSpec.default_bands(in_channels),
        mean=tuple(mean) if mean else dm,
        std=tuple(std) if std else ds,
        classes=classes,
        tile_size=tile_size,
        gsd=gsd,
        encoder_weights=weights,
        name=name or f"{arch}_{encoder}",
        extra={"seed": seed, "trained": False},
    )
    save_checkpoint(model, spec, path)
    return spec


_PREFIXES = ("model.", "module.", "net.", "network.")


def import_state_dict(
    state_dict_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    arch: str,
    encoder: str,
    in_channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    bands: Sequence[str] | None = None,
    classes: ClassTable = ISPRS,
    tile_size: int = 512,
    gsd: float | None = None,
    name: str | None = None,
) -> ModelSpec:
    """Wrap the ``state_dict`` of a plain segmentation-models-pytorch model as a geoseg checkpoint.

    Accepts a ``torch.save``-d state_dict (also nested under ``"state_dict"``
    or ``"model"``, with ``model.``/``module.`` prefixes as trainers write them)
    or a ``.safetensors`` file. The weights must fit the named architecture exactly.
    """
    src = Path(state_dict_path)
    obj = _torch_load(src)
    if isinstance(obj, Mapping) and _KEY in obj:
        raise CheckpointError(f"{src.name} is already a geoseg checkpoint; use it directly with --model")
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{src.name} does not hold a state_dict (a mapping of tensor names to tensors)")
    state = dict(obj)
    model = build_model(arch, encoder, in_channels=in_channels, classes=len(classes))
    expected = set(model.state_dict())
    for prefix in _PREFIXES:
        if not set(state) & expected and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected)
        detail = f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        if not missing and not unexpected:
            detail = str(exc).splitlines()[-1].strip()[:200]
        raise CheckpointError(
            f"{src.name} does not fit {arch}/{encoder} with {in_channels} bands and {len(classes)} classes: "
            f"{detail}; check --arch, --encoder and --in-channels"
        ) from exc
    spec = ModelSpec(
        arch=arch,
        encoder=encoder,
        in_channels=in_channels,
        bands=tuple(bands) if bands else ModelSpec.default_bands(in_channels),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        classes=classes,
        tile_size=tile_size,
        gsd=gsd,
        name=name or src.stem,
        extra={"imported_from": src.name, "trained": True},
    )
    save_checkpoint(model, spec, out)
    return spec
