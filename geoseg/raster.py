"""Open and validate a scene; read windows of it by path.

Everything here works on *paths*: a worker reopens the file for each read, so no
dataset handle is ever pickled or shared between threads.

Reads are "boundless": a window may extend past the scene, and the pixels
outside are filled by mirroring the scene at its edges (reflect, without
repeating the edge pixel). The mirror is computed from global pixel indices, so
a tile's input never depends on which block, chunk or worker read it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS, Geod
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from .errors import GeosegIOError, SceneError, SceneNotFoundError

__all__ = [
    "SceneInfo",
    "file_checksum",
    "has_valid_pixels",
    "open_scene",
    "read_window",
    "reflect_index",
    "select_bands",
]

log = logging.getLogger(__name__)

MaskKind = Literal["none", "nodata", "alpha", "mask"]


@dataclass(frozen=True)
class SceneInfo:
    """What geoseg needs to know about a scene; small and picklable.

    Attributes
    ----------
    path : str
        Absolute path of the GeoTIFF (or any GDAL raster).
    width, height, count : int
        Size in pixels and number of bands.
    dtype : str
        Band data type (the first band's; GDAL rasters share one in practice).
    crs_wkt : str
        The coordinate reference system as WKT.
    transform : Affine
        Pixel-to-CRS affine transform.
    nodata : float or None
        Declared nodata value.
    mask_kind : {'none', 'nodata', 'alpha', 'mask'}
        Where the valid-data mask comes from.
    alpha_bands : tuple of int
        1-based indexes of alpha bands (never fed to the model).
    colorinterp : tuple of str
        Colour interpretation of each band ('red', 'gray', 'undefined'...).
    block_shapes : tuple of (int, int)
        Internal block (tile or strip) shape per band.
    pixel_size_m : (float, float)
        Ground size of one pixel (x, y) in metres, at the scene centre for
        geographic CRSs.
    """

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs_wkt: str
    transform: Affine
    nodata: float | None
    mask_kind: MaskKind
    alpha_bands: tuple[int, ...]
    colorinterp: tuple[str, ...]
    block_shapes: tuple[tuple[int, int], ...]
    pixel_size_m: tuple[float, float]
    compression: str | None = None

    @property
    def crs(self) -> CRS:
        return CRS.from_wkt(self.crs_wkt)

    @property
    def is_geographic(self) -> bool:
        return self.crs.is_geographic

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def mean_pixel_m(self) -> float:
        """Geometric mean of the pixel's ground width and height, in metres."""
        return math.sqrt(self.pixel_size_m[0] * self.pixel_size_m[1])

    @property
    def data_bands(self) -> tuple[int, ...]:
        """1-based indexes of all bands except alpha bands."""
        return tuple(b for b in range(1, self.count + 1) if b not in self.alpha_bands)

    @property
    def crs_name(self) -> str:
        crs = self.crs
        epsg = crs.to_epsg()
        return f"EPSG:{epsg}" if epsg else crs.name


def _pixel_size_m(crs: CRS, transform: Affine, width: int, height: int) -> tuple[float, float]:
    """Ground pixel size in metres; for geographic CRSs, measured geodesically at the centre."""
    if crs.is_geographic:
        geod = (
            Geod(ellps="WGS84")
            if crs.ellipsoid is None
            else Geod(a=crs.ellipsoid.semi_major_metre, rf=crs.ellipsoid.inverse_flattening or 0.0)
        )
        cx, cy = transform @ (width / 2, height / 2)
        x1, y1 = transform @ (width / 2 + 1, height / 2)
        x2, y2 = transform @ (width / 2, height / 2 + 1)
        dx = geod.inv(cx, cy, x1, y1)[2]
        dy = geod.inv(cx, cy, x2, y2)[2]
        return (abs(dx), abs(dy))
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return (math.hypot(transform.a, transform.d) * factor, math.hypot(transform.b, transform.e) * factor)


def open_scene(path: str | os.PathLike[str]) -> SceneInfo:
    """Open a raster, check that geoseg can process it, and describe it.

    Parameters
    ----------
    path : path-like
        A GeoTIFF or any raster GDAL can read.

    Returns
    -------
    SceneInfo

    Raises
    ------
    SceneNotFoundError
        The path does not exist.
    GeosegIOError
        The file is not a raster, or it is truncated or corrupt.
    SceneError
        The raster has no CRS or no geotransform.
    """
    p = Path(path)
    if not p.exists():
        raise SceneNotFoundError(f"scene not found: {p}; check the path")
    if p.is_dir():
        raise GeosegIOError(f"{p} is a folder, not a raster; pass a GeoTIFF file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(p)
    except RasterioIOError as exc:
        raise GeosegIOError(
            f"{p.name} is not a readable raster ({_gdal_reason(exc)}); pass a GeoTIFF, and check that the "
            "file is complete (not truncated)"
        ) from exc
    with ds:
        if ds.crs is None:
            raise SceneError(
                f"{p.name} has no coordinate reference system; assign one first, e.g. "
                f"`gdal_edit.py -a_srs EPSG:XXXX {p.name}`"
            )
        if ds.transform == Affine.identity() and not ds.gcps[0]:
            raise SceneError(f"{p.name} has no geotransform; georeference it first (gdal_translate -a_ullr)")
        if ds.width == 0 or ds.height == 0 or ds.count == 0:
            raise SceneError(f"{p.name} is empty ({ds.width}x{ds.height} px, {ds.count} bands)")
        _check_readable(ds, p)
        alpha = tuple(i + 1 for i, ci in enumerate(ds.colorinterp) if ci == ColorInterp.alpha)
        flags = ds.mask_flag_enums[0]
        if alpha:
            kind: MaskKind = "alpha"
        elif MaskFlags.nodata in flags or ds.nodata is not None:
            kind = "nodata"
        elif MaskFlags.per_dataset in flags:
            kind = "mask"
        else:
            kind = "none"
        crs = CRS.from_user_input(ds.crs)
        return SceneInfo(
            path=str(p.resolve()),
            width=ds.width,
            height=ds.height,
            count=ds.count,
            dtype=ds.dtypes[0],
            crs_wkt=crs.to_wkt(),
            transform=ds.transform,
            nodata=ds.nodata,
            mask_kind=kind,
            alpha_bands=alpha,
            colorinterp=tuple(ci.name for ci in ds.colorinterp),
            block_shapes=tuple(ds.block_shapes),
            pixel_size_m=_pixel_size_m(crs, ds.transform, ds.width, ds.height),
            compression=ds.compression.value if ds.compression else None,
        )


def _gdal_reason(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg[:200]


def _check_readable(ds: rasterio.io.DatasetReader, p: Path) -> None:
    """Decode the last internal block of every band: a truncated file fails here, not mid-run."""
    bh, bw = ds.block_shapes[0]
    win = Window(max(0, ds.width - bw), max(0, ds.height - bh), min(bw, ds.width), min(bh, ds.height))
    try:
        ds.read(window=win)
    except RasterioIOError as exc:
        raise GeosegIOError(
            f"{p.name} is truncated or corrupt ({_gdal_reason(exc)}); re-download or re-export it"
        ) from exc


def select_bands(
    info: SceneInfo, bands: Sequence[int] | None, expected: int, names: Sequence[str] | None = None
) -> tuple[int, ...]:
    """Choose the 1-based scene bands fed to a model that expects `expected` bands.

    With `bands` given, they are validated; otherwise all non-alpha bands are
    used when their number fits.

    Raises
    ------
    SceneError
        The band count does not fit; the message says which ``--bands`` to pass.
    """
    model_bands = f" (bands: {','.join(names)})" if names else ""
    if bands:
        bad = [b for b in bands if not 1 <= b <= info.count]
        if bad:
            raise SceneError(
                f"--bands {','.join(map(str, bands))} names band(s) {bad} but "
                f"{Path(info.path).name} has bands 1..{info.count}"
            )
        if len(bands) != expected:
            raise SceneError(f"--bands selects {len(bands)} band(s) but the model expects {expected}{model_bands}")
        return tuple(int(b) for b in bands)
    data = info.data_bands
    if len(data) == expected:
        return data
    name = Path(info.path).name
    have = f"{name} has {len(data)} band(s){' + alpha' if info.alpha_bands else ''}"
    if len(data) > expected:
        fix = f"pass --bands {','.join(str(b) for b in data[:expected])} (or the bands in the model's order)"
    elif len(data) + len(info.alpha_bands) >= expected:
        fix = (
            f"if band {info.alpha_bands[0]} is data, not alpha, pass --bands "
            f"{','.join(str(b) for b in range(1, expected + 1))}"
        )
    else:
        fix = f"use a model for {len(data)}-band imagery"
    raise SceneError(f"{have} but the model expects {expected}{model_bands}; {fix}")


def reflect_index(index: np.ndarray, size: int) -> np.ndarray:
    """Map global pixel indices into ``[0, size)`` by mirroring at the edges.

    The mirror does not repeat the edge pixel (numpy's ``'reflect'``) and is
    periodic, so any offset, however far outside, has a defined source pixel.

    Examples
    --------
    >>> reflect_index(np.arange(-3, 6), 4).tolist()
    [3, 2, 1, 0, 1, 2, 3, 2, 1]
    """
    index = np.asarray(index, dtype=np.int64)
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    r = np.mod(index, period)
    return np.where(r < size, r, period - r)


def read_window(
    path: str,
    row_off: int,
    col_off: int,
    height: int,
    width: int,
    bands: Sequence[int],
    *,
    fill: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read a window that may extend past the scene, mirroring at the edges.

    Parameters
    ----------
    path : str
        Scene path; the file is opened and closed here.
    row_off, col_off, height, width : int
        The window in global pixel coordinates (negative offsets allowed).
    bands : sequence of int
        1-based bands to read, in the order the model expects them.
    fill : sequence of float, optional
        Per-band value written into pixels without data (so the model sees a
        neutral value there rather than the nodata value).

    Returns
    -------
    data : ndarray, shape (len(bands), height, width), scene dtype
    valid : ndarray of bool, shape (height, width)

    Notes
    -----
    Memory: the array read is the window clipped to the scene, at most
    ``height * width * len(bands)`` values, plus the padded copy.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with rasterio.open(path) as ds:
                rows = reflect_index(np.arange(row_off, row_off + height), ds.height)
                cols = reflect_index(np.arange(col_off, col_off + width), ds.width)
                r0, r1 = int(rows.min()), int(rows.max()) + 1
                c0, c1 = int(cols.min()), int(cols.max()) + 1
                win = Window(c0, r0, c1 - c0, r1 - r0)
                src = ds.read(list(bands), window=win)
                valid_src = ds.dataset_mask(window=win) > 0
        except RasterioIOError as exc:
            raise GeosegIOError(
                f"cannot read {Path(path).name} at rows {row_off}..{row_off + height}, "
                f"cols {col_off}..{col_off + width} ({_gdal_reason(exc)}); the file may be truncated"
            ) from exc
    ri = rows - r0
    ci = cols - c0
    if r0 == row_off and r1 == row_off + height and c0 == col_off and c1 == col_off + width:
        data, valid = src, valid_src
    else:
        data = src[:, ri[:, None], ci[None, :]]
        valid = valid_src[ri[:, None], ci[None, :]]
    if fill is not None and not valid.all():
        data = data.copy() if data is src else data
        inv = ~valid
        for b, v in enumerate(fill):
            data[b][inv] = _cast(v, data.dtype)
    return data, valid


def has_valid_pixels(info: SceneInfo, *, max_side: int = 1024) -> bool:
    """Whether the scene has any valid pixel, judged from its mask read at most `max_side` wide.

    Exact for scenes up to `max_side` pixels; for larger ones a mask that looks
    empty at reduced resolution returns True (the run then decides exactly).
    """
    if info.mask_kind == "none":
        return True
    scale = max(info.width, info.height) / max_side
    shape = (
        (info.height, info.width)
        if scale <= 1
        else (max(1, round(info.height / scale)), max(1, round(info.width / scale)))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(info.path) as ds:
            mask = ds.dataset_mask(out_shape=shape)
    return bool(mask.any()) or scale > 1


def _cast(value: float, dtype: np.dtype) -> Any:
    """`value` in `dtype`: rounded and clipped for integer types."""
    if np.issubdtype(dtype, np.integer):
        lim = np.iinfo(dtype)
        return np.asarray(np.clip(np.rint(value), lim.min, lim.max)).astype(dtype)[()]
    return np.asarray(value).astype(dtype)[()]


def file_checksum(path: str | os.PathLike[str], *, algorithm: str = "sha256") -> str:
    """Checksum of a whole file, read in 8 MiB pieces."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return f"{algorithm}:{h.hexdigest()}"
