"""Calibrated int8 graphs: static quantisation with onnxruntime, checked against fp32 before it is written.

:func:`quantize_int8` turns a geoseg checkpoint (or fp32 ``.onnx``) into an
int8 graph:

1. tiles at the model's tile size are read from real imagery (scenes, or a
   training dataset such as ``potsdam:ROOT``), spread evenly over it, and
   split alternately into calibration and held-out tiles;
2. activation ranges are calibrated on the first half (``quantize_static``,
   QDQ format, per-channel int8 weights, uint8 activations);
3. the int8 graph's classes are compared with the fp32 graph's on every
   valid pixel of the held-out half. Below `min_agreement` (default 99.5 %)
   the next calibration method is tried (min-max, then percentile); if none
   reaches it, nothing is written unless `force` is given.

Kept in float: the final class-score convolutions (their outputs are the
logits whose order *is* the answer, and they are a negligible share of the
compute) and the softmax. Everything else (the encoder and decoder
convolutions, which are nearly all of the work) runs in int8.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._files import staged
from ..errors import ConfigError, DatasetNotFoundError, GeosegError, QuantizationError
from .onnx_engine import OnnxPredictor, read_metadata
from .spec import ModelSpec

__all__ = ["MIN_AGREEMENT", "Calibration", "calibration_tiles", "quantize_int8"]

log = logging.getLogger(__name__)

#: Held-out argmax agreement with fp32 an int8 graph must reach to be written (and to be a default engine).
MIN_AGREEMENT = 0.995
#: Calibration methods tried in order until one reaches the agreement.
METHODS = ("minmax", "percentile")
#: Operators quantised (ORT fuses QDQ pairs around them into int8 kernels on CPU).
OP_TYPES = ("Conv", "Add", "MaxPool", "Relu", "Resize", "Concat", "GlobalAveragePool")

ProgressCallback = Callable[[str], None]
_Tile = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Calibration:
    """How an int8 graph was calibrated, and how well it agrees with fp32 on held-out tiles."""

    agreement: float
    method: str
    calibration_tiles: int
    heldout_tiles: int
    heldout_pixels: int
    kept_float: tuple[str, ...]
    sources: tuple[str, ...]
    tile: int
    written: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self))


# -- calibration data --------------------------------------------------------------------------


def _scene_files(source: str) -> list[Path]:
    p = Path(source).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        found = sorted(f for f in p.rglob("*") if f.suffix.lower() in (".tif", ".tiff", ".vrt", ".img", ".jp2"))
        if not found:
            raise DatasetNotFoundError(f"--calibrate {source}: the folder holds no rasters (.tif, .tiff, .vrt, .jp2)")
        return found
    raise DatasetNotFoundError(
        f"--calibrate {source}: no such file or folder; give scenes (files or folders of GeoTIFFs) or a "
        "dataset such as potsdam:ROOT or vaihingen:ROOT"
    )


def _windows(h: int, w: int, size: int) -> list[tuple[int, int]]:
    rows = [0] if h <= size else list(np.linspace(0, h - size, max(1, h // size)).astype(int))
    cols = [0] if w <= size else list(np.linspace(0, w - size, max(1, w // size)).astype(int))
    return [(int(r), int(c)) for r in rows for c in cols]


def _scene_tile(path: str, bands: tuple[int, ...], fill: tuple[float, ...], r: int, c: int, size: int) -> _Tile:
    from ..raster import read_window

    data, valid = read_window(path, r, c, size, size, bands, fill=fill)
    return np.asarray(data), np.asarray(valid, bool)


def _sample_tile(sample: Any, fill: tuple[float, ...], r: int, c: int, size: int, h: int, w: int) -> _Tile:
    from rasterio.windows import Window

    from ..training.datasets.samples import read_image

    img = read_image(sample, Window(c, r, min(size, w - c), min(size, h - r)))
    out = np.empty((img.shape[0], size, size), dtype=img.dtype)
    out[...] = np.asarray(fill, dtype=np.float64).reshape(-1, 1, 1).astype(img.dtype)
    out[:, : img.shape[1], : img.shape[2]] = img
    valid = np.zeros((size, size), bool)
    valid[: img.shape[1], : img.shape[2]] = True
    return out, valid


def _readers(spec: ModelSpec, sources: Sequence[str], size: int) -> list[Callable[[], _Tile]]:
    """One loader per candidate tile of every source (nothing is read yet)."""
    from ..raster import open_scene, select_bands

    fill = tuple(spec.mean)
    loaders: list[Callable[[], _Tile]] = []
    for source in sources:
        kind = str(source).partition(":")[0].lower()
        if kind in ("potsdam", "vaihingen", "synthetic") and ":" in str(source):
            loaders += _dataset_readers(spec, source, size)
            continue
        folder = Path(source).expanduser().is_dir()
        for path in _scene_files(source):
            try:
                info = open_scene(path)
                bands = select_bands(info, None, spec.in_channels, spec.bands)
            except GeosegError as exc:
                if not folder:
                    raise
                log.warning("calibration skips %s: %s", path.name, exc)  # labels beside images, say
                continue
            for r, c in _windows(info.height, info.width, size):
                loaders.append(functools.partial(_scene_tile, info.path, bands, fill, r, c, size))
    return loaders


def _dataset_readers(spec: ModelSpec, source: str, size: int) -> list[Callable[[], _Tile]]:
    import dataclasses

    import rasterio

    from ..training.datasets import parse_dataset
    from ..training.datasets.samples import match_bands

    fill = tuple(spec.mean)
    loaders: list[Callable[[], _Tile]] = []
    for sample in parse_dataset(source).load():
        bands = match_bands(sample, spec.bands)
        if bands is not None:
            sample = dataclasses.replace(sample, bands=bands)
        with rasterio.open(sample.image) as ds:
            h, w = ds.height, ds.width
        for r, c in _windows(h, w, size):
            loaders.append(functools.partial(_sample_tile, sample, fill, r, c, size, h, w))
    return loaders


def calibration_tiles(
    spec: ModelSpec, sources: Sequence[str], *, tiles: int = 32, size: int | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Up to `tiles` tiles (raw pixels, ``(C, size, size)``) spread evenly over `sources`, and their valid masks.

    A tile of which less than half is valid (nodata collars) is skipped. The
    choice depends only on the sources, so calibrating twice gives the same graph.
    """
    size = size or spec.tile_size
    loaders = _readers(spec, sources, size)
    if not loaders:
        raise DatasetNotFoundError(f"--calibrate {' '.join(sources)}: no imagery found")
    order = np.linspace(0, len(loaders) - 1, len(loaders)).astype(int)
    step = max(1, len(loaders) // max(tiles, 1))
    picked = list(order[::step]) + [i for i in order if i % step]  # evenly spread first, the rest as reserve
    images, masks = [], []
    for i in picked:
        data, valid = loaders[i]()
        if valid.mean() < 0.5:
            continue
        images.append(np.asarray(data))
        masks.append(np.asarray(valid, bool))
        if len(images) == tiles:
            break
    if len(images) < 2:
        raise DatasetNotFoundError(
            f"--calibrate {' '.join(sources)}: found {len(images)} tile(s) of {size} px with valid pixels; "
            "int8 calibration needs at least 2 (one to calibrate, one to check); give more imagery"
        )
    return images, masks


# -- quantisation -------------------------------------------------------------------------------


def _score_convs(model: Any, num_classes: int) -> list[str]:
    """Names of the Conv nodes that output the class scores (weights with `num_classes` output channels)."""
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "Conv" and len(n.input) > 1 and shapes.get(n.input[1], (0,))[0] == num_classes
    ]


class _Reader:
    def __init__(self, batches: list[np.ndarray], name: str) -> None:
        self._it: Iterator[np.ndarray] = iter(batches)
        self.name = name

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self.name: x}


def _normalise(tile: np.ndarray, spec: ModelSpec) -> np.ndarray:
    mean = np.asarray(spec.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(-1, 1, 1)
    return ((tile.astype(np.float32) - mean) / std)[None]


def _quantize(pre: Path, out: Path, calib: list[np.ndarray], exclude: list[str], method: str) -> None:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    extra: dict[str, Any] = {"CalibMovingAverage": False}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    with _quiet_stdout():
        quantize_static(
            str(pre),
            str(out),
            _Reader(calib, "image"),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(OP_TYPES),
            nodes_to_exclude=exclude,
            calibrate_method=methods[method],
            extra_options=extra,
        )


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """onnxruntime's calibrators print their settings on stdout (file descriptor 1): the library never prints."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _classes(predictor: OnnxPredictor, tiles: list[np.ndarray]) -> list[np.ndarray]:
    return [predictor.predict(t[None])[0].argmax(0) for t in tiles]


def _agreement(reference: list[np.ndarray], candidate: list[np.ndarray], masks: list[np.ndarray]) -> tuple[float, int]:
    same = sum(int((r == c)[m].sum()) for r, c, m in zip(reference, candidate, masks, strict=True))
    total = sum(int(m.sum()) for m in masks)
    return same / max(total, 1), total


def quantize_int8(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    calibrate: Sequence[str],
    tiles: int = 32,
    min_agreement: float = MIN_AGREEMENT,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> Calibration:
    """Write a calibrated int8 ONNX graph of `source` to `out`, if it agrees with fp32 well enough.

    Parameters
    ----------
    source : path-like
        A geoseg checkpoint or a geoseg fp32 ``.onnx``.
    out : path-like
        The ``.onnx`` file to write.
    calibrate : sequence of str
        Scenes (files, folders of rasters) or datasets (``potsdam:ROOT[:SPLIT]``,
        ``vaihingen:ROOT``, ``synthetic:FOLDER:N``) to take tiles from.
    tiles : int
        Tiles to read; half calibrate, half check (default 32).
    min_agreement : float
        Fraction of held-out valid pixels whose class must equal fp32's.
    force : bool
        Write the graph even below `min_agreement` (the metadata records its agreement).

    Returns
    -------
    Calibration
        The measured agreement and what was kept in float.

    Raises
    ------
    QuantizationError
        No calibration method reached `min_agreement` and `force` is false.
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .onnx_export import write_metadata
    from .runtime import is_onnx

    if not 0 < min_agreement <= 1:
        raise ConfigError(f"--min-agreement is a fraction between 0 and 1 (e.g. 0.995); got {min_agreement}")
    say = progress or (lambda _msg: None)
    with tempfile.TemporaryDirectory(prefix="geoseg-int8-") as tmpdir:
        tmp = Path(tmpdir)
        fp32 = Path(source)
        if not is_onnx(fp32):
            from .onnx_export import export_onnx

            say("exporting the fp32 graph")
            fp32 = tmp / "fp32.onnx"
            export_onnx(source, fp32)
        meta = read_metadata(fp32)
        if meta.get("geoseg_precision", "fp32") != "fp32":
            raise ConfigError(
                f"{Path(source).name} is already a {meta['geoseg_precision']} graph; quantise the fp32 model"
            )
        reference = OnnxPredictor(fp32, device="cpu", threads=os.cpu_count())
        spec = reference.spec
        say(f"reading up to {tiles} calibration tiles")
        images, masks = calibration_tiles(spec, calibrate, tiles=tiles)
        calib_idx = list(range(0, len(images), 2))
        held_idx = list(range(1, len(images), 2))
        pre = tmp / "pre.onnx"
        try:
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        except Exception as exc:  # pre-processing only helps; quantise the graph as exported
            log.info("quantisation pre-processing skipped: %s", exc)
            pre = fp32
        model = onnx.load(str(pre))
        exclude = _score_convs(model, spec.num_classes)
        kept = (*exclude, *(n.name for n in model.graph.node if n.op_type == "Softmax"))
        held, held_masks = [images[i] for i in held_idx], [masks[i] for i in held_idx]
        expected = _classes(reference, held)  # fp32's classes, once for every calibration method tried
        best: tuple[float, int, str, Path] | None = None
        for method in METHODS:
            say(f"calibrating ({method}) on {len(calib_idx)} tiles")
            q = tmp / f"int8-{method}.onnx"
            _quantize(pre, q, [_normalise(images[i], spec) for i in calib_idx], exclude, method)
            qm = onnx.load(str(q))
            write_metadata(qm, meta | {"geoseg_precision": "int8"})
            onnx.save(qm, str(q))
            candidate = OnnxPredictor(q, device="cpu", threads=os.cpu_count())
            agree, pixels = _agreement(expected, _classes(candidate, held), held_masks)
            log.info("int8 (%s calibration): %.4f%% of held-out pixels agree with fp32", method, 100 * agree)
            say(f"{method}: {agree:.4%} of {pixels:,} held-out pixels agree with fp32")
            if best is None or agree > best[0]:
                best = (agree, pixels, method, q)
            if agree >= min_agreement:
                break
        assert best is not None
        agree, pixels, method, q = best
        result = Calibration(
            agreement=agree,
            method=method,
            calibration_tiles=len(calib_idx),
            heldout_tiles=len(held_idx),
            heldout_pixels=pixels,
            kept_float=tuple(kept),
            sources=tuple(str(s) for s in calibrate),
            tile=images[0].shape[-1],
            written=agree >= min_agreement or force,
        )
        if not result.written:
            raise QuantizationError(
                f"the int8 graph agrees with fp32 on {agree:.3%} of {pixels:,} held-out pixels, below "
                f"--min-agreement {min_agreement:.3%}; calibrate on imagery more like the scenes you map, "
                "keep fp32, or pass --force to write it anyway"
            )
        qm = onnx.load(str(q))
        write_metadata(qm, meta | {"geoseg_precision": "int8", "geoseg_calibration": result.to_json()})
        with staged(Path(out)) as part:
            onnx.save(qm, str(part))
    return result
