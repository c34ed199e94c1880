"""``geoseg model export``: a geoseg checkpoint as a self-describing ONNX graph.

The graph takes the normalised image and returns softmax probabilities (see
:mod:`geoseg.predict.onnx_engine`); batch, height and width are dynamic
unless a fixed tile is asked for. Its metadata holds geoseg's whole
:class:`~geoseg.predict.spec.ModelSpec` and the keys QGIS plugins read:

============================  =====================================================
``model_type``                ``Segmentor`` (Deepness, GeoDeep)
``class_names``               JSON ``{"0": "impervious surfaces", ...}``
``resolution``                training pixel size in cm (when known)
``tiles_size``                tile size in pixels (``tile_size`` for GeoDeep too)
``tiles_overlap``             overlap in percent of the tile
``standardization_mean/std``  mean and std for pixels scaled to 0..1 (8-bit / 255)
============================  =====================================================
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._files import sha256_file, staged
from ..tiling import DEFAULT_OVERLAP
from .checkpoint import load_checkpoint
from .models import input_multiple
from .onnx_engine import FORMAT_KEY, FORMAT_VERSION
from .spec import ModelSpec

__all__ = ["OPSET", "export_onnx", "onnx_metadata", "write_metadata"]

log = logging.getLogger(__name__)

#: ONNX opset of exported graphs (onnxruntime >= 1.14 runs it).
OPSET = 18


class _WithSoftmax(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def onnx_metadata(
    spec: ModelSpec, *, multiple: int, precision: str, source_sha256: str, extra: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The metadata of a geoseg graph: geoseg's own keys and the QGIS plugins' keys, all strings."""
    overlap_pct = round(100 * DEFAULT_OVERLAP / spec.tile_size)
    meta = {
        FORMAT_KEY: str(FORMAT_VERSION),
        "geoseg_spec": json.dumps(spec.to_dict()),
        "geoseg_multiple": str(multiple),
        "geoseg_precision": precision,
        "geoseg_source_sha256": source_sha256,
        "model_type": "Segmentor",
        "class_names": json.dumps({str(c.id): c.name for c in spec.classes}),
        "tiles_size": str(spec.tile_size),
        "tile_size": str(spec.tile_size),
        "tiles_overlap": str(overlap_pct),
        "standardization_mean": json.dumps([m / 255 for m in spec.mean]),
        "standardization_std": json.dumps([s / 255 for s in spec.std]),
    }
    if spec.gsd:
        meta["resolution"] = f"{spec.gsd * 100:g}"
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    return meta


def write_metadata(model: Any, meta: Mapping[str, str]) -> None:
    """Set `meta` as an ``onnx.ModelProto``'s ``metadata_props`` (replacing keys already there)."""
    keep = [p for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = k, v


def _trace(model: nn.Module, spec: ModelSpec, tile: int | None, dest: Path) -> None:
    size = tile or spec.tile_size
    dummy = torch.zeros(1, spec.in_channels, size, size)
    dim = torch.export.Dim.DYNAMIC
    dynamic = None if tile else ({0: dim, 2: dim, 3: dim},)
    # torch.export's exporter (the TorchScript one is deprecated); it reports its steps on stdout
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(
            _WithSoftmax(model).eval(),
            (dummy,),
            str(dest),
            input_names=["image"],
            output_names=["probabilities"],
            dynamic_shapes=dynamic,
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
        )


def export_onnx(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    tile: int | None = None,
) -> ModelSpec:
    """Export a geoseg checkpoint to an fp32 ONNX graph at `out` (written under a temporary name, then renamed).

    Parameters
    ----------
    source : path-like
        A geoseg checkpoint.
    out : path-like
        The ``.onnx`` file to write.
    tile : int, optional
        Fix the input to ``(1, C, tile, tile)`` for tools that need static
        shapes; by default batch, height and width are dynamic.
    """
    import onnx

    model, spec = load_checkpoint(source)
    if tile is not None and tile % input_multiple(model):
        raise ValueError(f"--static-tile must be a multiple of {input_multiple(model)}; got {tile}")
    with tempfile.TemporaryDirectory(prefix="geoseg-export-") as tmp:
        traced = Path(tmp) / "graph.onnx"
        _trace(model, spec, tile, traced)
        proto = onnx.load(str(traced))
    meta = onnx_metadata(
        spec,
        multiple=input_multiple(model),
        precision="fp32",
        source_sha256=sha256_file(source),
        extra={"geoseg_static_tile": str(tile)} if tile else None,
    )
    write_metadata(proto, meta)
    proto.doc_string = f"geoseg {spec.name}: {spec.arch}/{spec.encoder}, {spec.num_classes} classes"
    with staged(Path(out)) as tmp:
        onnx.save(proto, str(tmp))
    log.info("exported %s to %s", Path(source).name, out)
    return spec
