"""Open and validate a scene; read windows of it by path or URL.

Everything here works on *paths*: a worker reopens the file for each read, so no
dataset handle is ever pickled or shared between threads. A scene may also be an
``http(s)://`` URL, an ``s3://`` key or a GDAL ``/vsi…`` path (see
:mod:`geoseg.remote`); :attr:`SceneInfo.path` is then the GDAL path, and reads
fetch only the byte ranges of the window.

Reads are "boundless": a window may extend past the scene, and the pixels
outside are filled by mirroring the scene at its edges (reflect, without
repeating the edge pixel). The mirror is computed from global pixel indices, so
a tile's input never depends on which block, chunk or worker read it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import shlex
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS, Geod, Transformer
from pyproj.exceptions import ProjError
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from ._files import sha256_file
from .errors import GeosegIOError, SceneError, SceneNotFoundError
from .remote import (
    display_name,
    gdal_path,
    is_remote,
    not_found_message,
    redact,
    remote_checksum,
    remote_env,
    remote_stat,
    scene_name,
)

__all__ = [
    "BAND_ALIASES",
    "SceneInfo",
    "band_meaning",
    "band_meanings",
    "file_checksum",
    "has_valid_pixels",
    "open_raster",
    "open_scene",
    "read_window",
    "reflect_index",
    "select_bands",
    "valid_mask",
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
        1-based indexes of the alpha bands that mask the scene (never fed to
        the model).
    colorinterp : tuple of str
        Colour interpretation of each band ('red', 'gray', 'undefined'...).
    block_shapes : tuple of (int, int)
        Internal block (tile or strip) shape per band.
    pixel_size_m : (float, float)
        Ground size of one pixel (x, y) in metres at the scene centre, in the
        convention ``area_m2`` is measured in (see :func:`_pixel_size_m`).
    compression : str or None
        Compression of the file, as GDAL names it.
    descriptions : tuple of str
        Band descriptions ('' where a band has none).
    data_alpha : tuple of int
        1-based indexes of bands tagged alpha that hold data (more than two
        values), so they are data bands, not a mask.
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
    descriptions: tuple[str, ...] = ()
    data_alpha: tuple[int, ...] = ()

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


# -- band meaning ---------------------------------------------------------------------------

#: What a band can mean, and the names (band descriptions, checkpoint band names) that say so.
#: The one table geoseg matches band names with; names are compared lower-case, with spaces and
#: underscores read as hyphens.
BAND_ALIASES: dict[str, tuple[str, ...]] = {
    "red": ("red", "r"),
    "green": ("green", "g"),
    "blue": ("blue", "b"),
    "nir": ("nir", "ir", "near-infrared", "nearinfrared", "near-ir", "infrared", "nir1"),
    # its own meaning, so that "red edge" never reads as red
    "rededge": ("rededge", "red-edge", "re"),
    "swir1": ("swir1", "swir-1"),
    "swir2": ("swir2", "swir-2"),
    "pan": ("pan", "panchromatic"),
}
_ALIAS = {alias: meaning for meaning, aliases in BAND_ALIASES.items() for alias in aliases}
#: Words in a band description that carry no meaning ("Red band", "NIR reflectance", "B04 red").
_FILLER = re.compile(r"^(band|channel|reflectance|b?\d+)$")
#: GDAL colour interpretations that say what a band holds; gray and undefined say nothing
#: (GDAL tags the first band of any MINISBLACK file gray).
_COLORINTERP_MEANING = {"red": "red", "green": "green", "blue": "blue"}


def band_meaning(name: str | None) -> str | None:
    """The meaning (a key of :data:`BAND_ALIASES`) of a band name or description, or None.

    Examples
    --------
    >>> [band_meaning(n) for n in ("NIR", "near infrared", "Red band", "B04 red", "red edge", "Band 1", None)]
    ['nir', 'nir', 'red', 'red', 'rededge', None, None]
    """
    if not name:
        return None
    text = re.sub(r"[\s_]+", "-", name.strip().lower())
    if text in _ALIAS:
        return _ALIAS[text]
    tokens = [t for t in re.split(r"[^a-z0-9]+", text) if t]
    found: set[str | None] = set()
    i = 0
    while i < len(tokens):
        pair = "-".join(tokens[i : i + 2]) if i + 1 < len(tokens) else None
        if pair in _ALIAS:
            found.add(_ALIAS[pair])
            i += 2
            continue
        if tokens[i] in _ALIAS:
            found.add(_ALIAS[tokens[i]])
        elif not _FILLER.match(tokens[i]):
            found.add(None)  # a word we do not know: the description may mean something else
        i += 1
    return found.pop() if len(found) == 1 else None


def band_meanings(info: SceneInfo) -> tuple[str | None, ...]:
    """What each band of the scene holds: a key of :data:`BAND_ALIASES`, ``'alpha'`` or None.

    A band description that names a meaning wins over the colour interpretation,
    because GDAL tags any 3- or 4-band 8-bit TIFF red, green, blue whatever it
    holds, while descriptions are written on purpose. Alpha bands that mask the
    scene are ``'alpha'``; bands tagged alpha that hold data mean what their
    description says, else None.
    """
    out: list[str | None] = []
    for b in range(1, info.count + 1):
        if b in info.alpha_bands:
            out.append("alpha")
            continue
        desc = info.descriptions[b - 1] if b - 1 < len(info.descriptions) else ""
        ci = info.colorinterp[b - 1] if b - 1 < len(info.colorinterp) else "undefined"
        out.append(band_meaning(desc) or _COLORINTERP_MEANING.get(ci))
    return tuple(out)


def _describe_bands(meanings: Sequence[str | None], bands: Sequence[int]) -> str:
    return ",".join(meanings[b - 1] or "?" for b in bands)


_logged: set[str] = set()


def _warn_once(msg: str) -> None:
    """Log `msg` as a warning once per process (run and info may ask about a scene more than once)."""
    if msg not in _logged:
        _logged.add(msg)
        log.warning("%s", msg)


def _pixel_size_m(crs: CRS, transform: Affine, width: int, height: int) -> tuple[float, float]:
    """Ground size of one pixel (x, y) in metres at the scene centre.

    The size follows :func:`geoseg.vectorize.area_method`, so that ``--min-area``
    (m²) turned into pixels here and the ``area_m2`` of the polygons agree:
    where areas are planar (a projection whose areal scale at the centre is
    within 0.5 % of 1: UTM, national grids, equal-area projections) it is the
    size in map units; elsewhere (geographic CRSs, Web and World Mercator...)
    it is measured on the CRS's ellipsoid between the centre pixel's edges.

    Measuring geodesically rather than dividing by ``Proj.get_factors`` scales
    matters for Web Mercator: PROJ reports its spherical scale (1/cos lat),
    while EPSG:3857 coordinates are referenced to the WGS84 ellipsoid, on which
    ``area_m2`` is measured (0.13 % apart in length at 38 degrees).
    """
    unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info and not crs.is_geographic else 1.0
    planar = (math.hypot(transform.a, transform.d) * unit, math.hypot(transform.b, transform.e) * unit)
    cx, cy = width / 2, height / 2
    if not crs.is_geographic:
        from .vectorize.georef import area_method

        if area_method(crs, *(transform @ (cx, cy))) == "planar":
            return planar
    # central differences across the centre pixel: each edge midpoint to the opposite one
    cols = np.array([cx - 0.5, cx + 0.5, cx, cx])
    rows = np.array([cy, cy, cy - 0.5, cy + 0.5])
    xs = transform.a * cols + transform.b * rows + transform.c
    ys = transform.d * cols + transform.e * rows + transform.f
    if crs.is_geographic:
        lon, lat = xs, ys  # rasterio keeps GDAL's traditional order: x is longitude
    else:
        try:
            lon, lat = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True).transform(xs, ys, errcheck=True)
        except (ProjError, TypeError) as exc:  # no geodetic datum (engineering CRS) or centre off the projection
            log.warning("cannot measure the ground pixel size in %s (%s); using map units", crs.name, exc)
            return planar
    ell = crs.ellipsoid
    geod = Geod(ellps="WGS84") if ell is None else Geod(a=ell.semi_major_metre, b=ell.semi_minor_metre)
    _, _, dist = geod.inv(lon[[0, 2]], lat[[0, 2]], lon[[1, 3]], lat[[1, 3]])
    return (float(abs(dist[0])), float(abs(dist[1])))


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
    if is_remote(path):
        return _open_remote(gdal_path(path))
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
        return _describe(ds, str(p.resolve()))


def _open_remote(path: str) -> SceneInfo:
    """:func:`open_scene` for a GDAL network path: one HEAD-like request says whether it exists."""
    name = scene_name(path)
    with remote_env():
        try:
            found = remote_stat(path)
        except OSError:  # GDAL's library not reachable here: let the open below decide
            found = RemoteStatUnknown
        if found is None:
            raise SceneNotFoundError(not_found_message(path))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                ds = rasterio.open(path)
        except RasterioIOError as exc:
            if found is RemoteStatUnknown:
                raise SceneNotFoundError(f"{not_found_message(path)} ({redact(_gdal_reason(exc), path)})") from None
            raise GeosegIOError(
                f"{name} is not a readable raster ({redact(_gdal_reason(exc), path)}); pass a GeoTIFF, and check "
                "that the object is complete (not truncated)"
            ) from None
        with ds:
            return _describe(ds, path)


#: Stands for "existence not asked" in :func:`_open_remote`.
RemoteStatUnknown: Any = object()


def _describe(ds: rasterio.io.DatasetReader, path: str) -> SceneInfo:
    """Check an open scene and describe it; `path` is what workers reopen."""
    p = Path(scene_name(path))  # for messages: the file name only
    _check_georeferenced(ds, p)
    if ds.width == 0 or ds.height == 0 or ds.count == 0:
        raise SceneError(f"{p.name} is empty ({ds.width}x{ds.height} px, {ds.count} bands)")
    _check_readable(ds, p)
    tagged_alpha = tuple(i + 1 for i, ci in enumerate(ds.colorinterp) if ci == ColorInterp.alpha)
    found = _data_alpha(path) if tagged_alpha else ()
    for b, distinct, share in found:
        _warn_once(
            f"band {b} of {p.name} is tagged alpha but holds data ({distinct} distinct values, {share:.0%} "
            "of its non-zero pixels between 0 and its maximum): geoseg treats it as a data band, not a mask"
        )
    data_alpha = tuple(b for b, _, _ in found)
    alpha = tuple(b for b in tagged_alpha if b not in data_alpha)
    flags = ds.mask_flag_enums[0]
    if alpha:
        kind: MaskKind = "alpha"
    elif MaskFlags.nodata in flags or ds.nodata is not None:
        kind = "nodata"
    elif MaskFlags.per_dataset in flags and not data_alpha:
        kind = "mask"
    else:
        kind = "none"
    crs = CRS.from_user_input(ds.crs)
    return SceneInfo(
        path=path,
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
        descriptions=tuple(d or "" for d in ds.descriptions),
        data_alpha=data_alpha,
    )


def _check_georeferenced(ds: rasterio.io.DatasetReader, p: Path) -> None:
    """Refuse a scene without an affine georeference, saying how to give it one."""
    name = shlex.quote(p.name)
    out = shlex.quote(f"{p.stem}_rectified.tif")
    gcps, gcp_crs = ds.gcps
    if ds.transform.is_identity and (gcps or ds.rpcs):
        # Warping here would put the outputs on a grid the user never chose, named after a file
        # they do not have; a rectified file they keep is the honest input (see the README).
        how = f"{len(gcps)} ground control points (GCPs)" if gcps else "rational polynomial coefficients (RPCs)"
        srs = " -s_srs EPSG:XXXX (the GCPs' CRS)" if gcps and gcp_crs is None else ""
        rpc = " -rpc" if not gcps else ""
        raise SceneError(
            f"{p.name} is georeferenced by {how}, not by a geotransform, and geoseg maps on the scene's own "
            f"grid; rectify it first: `gdalwarp{rpc}{srs} -r bilinear -co TILED=YES -co COMPRESS=DEFLATE "
            f"{name} {out}`, then run geoseg on {out}"
        )
    if ds.crs is None and ds.transform.is_identity:
        out = shlex.quote(f"{p.stem}_georef.tif")
        raise SceneError(
            f"{p.name} is not georeferenced (no coordinate reference system, no geotransform: a plain "
            f"{ds.driver} image?); georeference it first, e.g. `gdal_translate -a_srs EPSG:XXXX "
            f"-a_ullr ULX ULY LRX LRY {name} {out}`"
        )
    if ds.crs is None:
        raise SceneError(
            f"{p.name} has no coordinate reference system; assign one first, e.g. "
            f"`gdal_edit.py -a_srs EPSG:XXXX {name}`"
        )
    if ds.transform.is_identity:
        out = shlex.quote(f"{p.stem}_georef.tif")
        raise SceneError(
            f"{p.name} has no geotransform; georeference it first, e.g. "
            f"`gdal_translate -a_ullr ULX ULY LRX LRY {name} {out}`"
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
        reason = re.sub(r"\?\S*", "", _gdal_reason(exc))  # a URL's query string may hold a secret
        raise GeosegIOError(f"{p.name} is truncated or corrupt ({reason}); re-download or re-export it") from exc


#: An alpha band holds data, not a mask, when more than this share of its non-zero sampled pixels
#: lie strictly between 0 and its maximum. A real mask has such values only along feathered
#: edges (gdalwarp -dstalpha with bilinear or cubic resampling, averaged overviews): a thin fringe.
_ALPHA_DATA_SHARE = 0.1


@contextmanager
def open_raster(path: str | os.PathLike[str]) -> Iterator[rasterio.io.DatasetReader]:
    """Open any raster for reading without rasterio's ``NotGeoreferencedWarning``.

    Plain PNG and JPEG images (training tiles, evaluation images) have no
    georeference on purpose; the warning would reach the terminal as a
    traceback-like message. Callers that need a georeference check it
    themselves (:func:`open_scene` does).
    """
    with contextlib.ExitStack() as stack:
        if is_remote(path):
            stack.enter_context(remote_env())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = stack.enter_context(rasterio.open(gdal_path(path)))
        yield ds


def _sample_band(ds: rasterio.io.DatasetReader, band: int, *, max_side: int = 1024) -> np.ndarray:
    """A cheap, deterministic sample of one band's pixels (never the whole of a large band).

    Small bands are read whole; larger ones from an overview where the file has
    one, else as a 4 x 4 grid of windows of ``max_side / 4`` px spread over
    the scene (``max_side**2`` pixels in all).
    """
    h, w = ds.height, ds.width
    if h * w <= max_side * max_side:
        return np.asarray(ds.read(band)).ravel()
    if ds.overviews(band):
        scale = max(h, w) / max_side
        shape = (max(1, round(h / scale)), max(1, round(w / scale)))
        return np.asarray(ds.read(band, out_shape=shape)).ravel()  # GDAL reads the nearest overview
    side = max(16, max_side // 4)
    parts = []
    for r in np.linspace(0, max(0, h - side), 4).astype(int):
        for c in np.linspace(0, max(0, w - side), 4).astype(int):
            parts.append(np.asarray(ds.read(band, window=Window(int(c), int(r), min(side, w), min(side, h)))).ravel())
    return np.concatenate(parts)


def _alpha_holds_data(values: np.ndarray) -> tuple[bool, int, float]:
    """Whether sampled alpha `values` are data; with their count of distinct values and mid share."""
    distinct = np.unique(values)
    top = distinct[-1] if distinct.size else 0
    nonzero = int(np.count_nonzero(values))
    mid = int(np.count_nonzero((values > 0) & (values < top)))
    share = mid / nonzero if nonzero else 0.0
    return distinct.size > 2 and share > _ALPHA_DATA_SHARE, int(distinct.size), share


@functools.lru_cache(maxsize=64)
def _data_alpha_cached(path: str, stamp: tuple[int, int]) -> tuple[tuple[int, int, float], ...]:
    with open_raster(path) as ds:
        found = []
        for b, ci in enumerate(ds.colorinterp, start=1):
            if ci == ColorInterp.alpha:
                is_data, distinct, share = _alpha_holds_data(_sample_band(ds, b))
                if is_data:
                    found.append((b, distinct, share))
    return tuple(found)


def _data_alpha(path: str) -> tuple[tuple[int, int, float], ...]:
    """Bands of `path` tagged alpha that hold data, as (band, distinct values, mid share).

    Every reader (``open_scene`` in the client, ``read_window`` on each worker)
    must agree, so the decision is a pure function of the file, made once per
    process and cached on the file's path, size and modification time.
    """
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:  # a URL or /vsi path: no stat, the path identifies it
        stamp = (0, 0)
    return _data_alpha_cached(path, stamp)


def select_bands(
    info: SceneInfo, bands: Sequence[int] | None, expected: int, names: Sequence[str] | None = None
) -> tuple[int, ...]:
    """Choose the 1-based scene bands fed to a model that expects `expected` bands named `names`.

    The one place geoseg decides which bands a model sees (``geoseg run`` and
    ``geoseg info --model`` call it). Band *meaning* is matched, not only band
    count: where the model's band names and the scene's band descriptions or
    colour interpretation say what the bands hold (see :func:`band_meanings`),
    each model input gets the scene band that means the same, so an RGBIR
    scene feeds nir,red,green to an IRRG model and an RGBN or RGBA scene
    feeds 1,2,3 to an RGB model.

    Parameters
    ----------
    info : SceneInfo
    bands : sequence of int or None
        ``--bands``: used as given (after validation), with a warning where the
        scene's tags say they mean something else than the model's inputs.
    expected : int
        Number of model inputs.
    names : sequence of str, optional
        The model's band names, in its order.

    Returns
    -------
    tuple of int

    Raises
    ------
    SceneError
        The bands do not fit, are ambiguous, or contradict the model's; the
        message says which ``--bands`` to pass.

    Notes
    -----
    Where the scene says nothing about its bands (gray/undefined colour
    interpretation, no descriptions), the count alone decides and a warning
    is logged once: the file's band order is then assumed to be the model's.
    """
    name = scene_name(info.path)
    model_bands = f" (bands: {','.join(names)})" if names else ""
    meanings = band_meanings(info)
    wanted = [band_meaning(n) for n in names] if names and len(names) == expected else []
    model_meant = bool(wanted) and all(w is not None for w in wanted)
    if bands:
        bad = [b for b in bands if not 1 <= b <= info.count]
        if bad:
            raise SceneError(
                f"--bands {','.join(map(str, bands))} names band(s) {bad} but {name} has bands 1..{info.count}"
            )
        if len(bands) != expected:
            raise SceneError(f"--bands selects {len(bands)} band(s) but the model expects {expected}{model_bands}")
        if model_meant:
            clash = [
                f"band {b} ({meanings[b - 1]}) to {w}"
                for b, w in zip(bands, wanted, strict=True)
                if meanings[b - 1] is not None and meanings[b - 1] != w
            ]
            if clash:
                _warn_once(
                    f"--bands {','.join(map(str, bands))} feeds {', '.join(clash)} of the model's "
                    f"{','.join(names or ())} inputs, against the band tags of {name}; using them as given"
                )
        return tuple(int(b) for b in bands)
    data = info.data_bands
    if model_meant and len(data) >= expected and any(meanings[b - 1] is not None for b in data):
        return _match_meanings(info, meanings, wanted, names or ())
    if len(data) == expected:
        if model_meant and expected > 1:
            tags = ",".join(info.colorinterp[b - 1] for b in data)
            _warn_once(
                f"{name} does not say what its bands hold (colour interpretation {tags}, no band descriptions): "
                f"assuming bands {','.join(map(str, data))} are the model's {','.join(names or ())}; "
                "pass --bands to choose"
            )
        return data
    have = f"{name} has {len(data)} band(s){' + alpha' if info.alpha_bands else ''}"
    if len(data) > expected:
        fix = f"pass --bands {','.join(str(b) for b in data[:expected])} (or the bands in the model's order)"
    elif len(data) + len(info.alpha_bands) >= expected:
        fix = (
            f"if band {info.alpha_bands[0]} is data, not alpha, pass --bands "
            f"{','.join(str(b) for b in range(1, expected + 1))}"
        )
    elif len(data) == 1:
        ones = ",".join(str(data[0]) for _ in range(expected))
        fix = f"pass --bands {ones} to feed its one band to every input, or use a model for 1-band imagery"
    else:
        fix = f"use a model for {len(data)}-band imagery"
    raise SceneError(f"{have} but the model expects {expected}{model_bands}; {fix}")


def _match_meanings(
    info: SceneInfo, meanings: Sequence[str | None], wanted: Sequence[str | None], names: Sequence[str]
) -> tuple[int, ...]:
    """Bands for a model whose inputs have known meanings, on a scene that tags some of its bands."""
    name = scene_name(info.path)
    data = info.data_bands
    model = ",".join(names)
    chosen: list[int | None] = []
    for w in wanted:
        candidates = [b for b in data if meanings[b - 1] == w]
        if len(candidates) > 1:
            fill = _fill_order(wanted, meanings, data)
            guess = [candidates[0] if x == w else b for x, b in zip(wanted, fill, strict=True)]
            raise SceneError(
                f"{name} has {len(candidates)} bands tagged {w} ({','.join(map(str, candidates))}), so the "
                f"model's {w} input is ambiguous; pass --bands in the model's order ({model}), e.g. "
                f"--bands {','.join(map(str, guess))}"
            )
        chosen.append(candidates[0] if candidates else None)
    missing = [i for i, b in enumerate(chosen) if b is None]
    if not missing:
        return tuple(b for b in chosen if b is not None)
    unknown = [b for b in data if meanings[b - 1] is None]
    tags = _describe_bands(meanings, data)
    if len(unknown) == len(missing):
        for i, b in zip(missing, unknown, strict=True):
            chosen[i] = b
        picked = tuple(b for b in chosen if b is not None)
        _warn_once(
            f"{name}: band(s) {','.join(map(str, unknown))} do not say what they hold; assuming they are the "
            f"model's {','.join(str(names[i]) for i in missing)} (bands {tags} -> --bands "
            f"{','.join(map(str, picked))}); pass --bands to choose"
        )
        return picked
    lacking = ",".join(str(wanted[i]) for i in missing)
    if unknown:
        raise SceneError(
            f"{name} has bands {tags} (? = untagged) but the model expects {model}: its {lacking} input(s) "
            f"could be any of band(s) {','.join(map(str, unknown))}; pass --bands in the model's order, e.g. "
            f"--bands {','.join(map(str, _fill_order(wanted, meanings, data)))}"
        )
    # Every band says what it holds and none is what the model needs: either the tags are wrong
    # (GDAL tags any 3-band 8-bit TIFF red,green,blue, the ISPRS IRRG tiles included) or the model is.
    order = ",".join(map(str, data[: len(wanted)]))
    raise SceneError(
        f"{name} has bands tagged {tags} but the model expects {model}: no band is tagged {lacking}; if the "
        f"file's bands really are {model} in that order (tags are wrong: GDAL tags any 3-band 8-bit TIFF "
        f"red,green,blue), pass --bands {order}, else use a model for {tags} imagery"
    )


def _fill_order(wanted: Sequence[str | None], meanings: Sequence[str | None], data: Sequence[int]) -> list[int]:
    """A --bands suggestion: the tagged band for each input that has one, the remaining bands in file order."""
    picked: list[int | None] = [next((b for b in data if meanings[b - 1] == w), None) for w in wanted]
    untagged = [b for b in data if b not in picked and meanings[b - 1] is None]
    rest = iter(untagged + [b for b in data if b not in picked and b not in untagged])
    return [b if b is not None else next(rest, data[0]) for b in picked]


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
    where = "on opening it"
    remote = is_remote(path)
    with warnings.catch_warnings(), remote_env() if remote else contextlib.nullcontext():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with rasterio.open(gdal_path(path)) as ds:
                rows = reflect_index(np.arange(row_off, row_off + height), ds.height)
                cols = reflect_index(np.arange(col_off, col_off + width), ds.width)
                r0, r1 = int(rows.min()), int(rows.max()) + 1
                c0, c1 = int(cols.min()), int(cols.max()) + 1
                win = Window(c0, r0, c1 - c0, r1 - r0)
                where = f"in rows {r0}..{r1 - 1}, cols {c0}..{c1 - 1}"  # the scene's own pixels
                src = ds.read(list(bands), window=win)
                valid_src = valid_mask(ds, path, win)
        except RasterioIOError as exc:
            if remote:
                raise GeosegIOError(
                    f"cannot read {display_name(path)} {where} ({redact(_gdal_reason(exc), path)}); check the "
                    "network and the GDAL_HTTP_* / AWS_* settings, then run again to resume"
                ) from None
            if not _exists(path):
                raise SceneNotFoundError(f"{path} was removed or moved during the run; restore it, run again") from exc
            raise GeosegIOError(
                f"cannot read {Path(path).name} {where} ({_gdal_reason(exc)}); the file may be truncated "
                "or damaged: check it with gdalinfo -checksum"
            ) from exc
    ri = rows - r0
    ci = cols - c0
    if r0 == row_off and r1 == row_off + height and c0 == col_off and c1 == col_off + width:
        data, valid = src, valid_src
    else:
        data = src[:, ri[:, None], ci[None, :]]
        valid = valid_src[ri[:, None], ci[None, :]]
    if np.issubdtype(data.dtype, np.floating):
        # NaN and +-inf are nodata for their pixel only: fed to the model they would make a
        # whole tile's probabilities NaN, and the blend would blank it without a word.
        finite = np.isfinite(data).all(axis=0)
        if not finite.all():
            _note_nonfinite(path, int(np.count_nonzero(valid & ~finite)))
            valid = valid & finite
            data = data.copy() if data is src else data
            data[:, ~finite] = 0
    if fill is not None and not valid.all():
        data = data.copy() if data is src else data
        inv = ~valid
        for b, v in enumerate(fill):
            data[b][inv] = _cast(v, data.dtype)
    return data, valid


_nonfinite_noted: set[str] = set()


def _note_nonfinite(path: str, count: int) -> None:
    """Say once per scene and process that non-finite pixels are taken as nodata."""
    if count and path not in _nonfinite_noted:
        _nonfinite_noted.add(path)
        log.warning(
            "%s holds NaN or infinite pixels (%d in the first window read); they are treated as nodata, pixel by pixel",
            scene_name(path),
            count,
        )


def _exists(path: str) -> bool:
    """False only for a local file that is gone (GDAL paths such as /vsicurl/ count as present)."""
    return path.startswith("/vsi") or "://" in path or Path(path).exists()


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
    with open_raster(info.path) as ds:
        mask = valid_mask(ds, info.path, None, out_shape=shape)
    return bool(mask.any()) or scale > 1


def valid_mask(
    ds: rasterio.io.DatasetReader,
    path: str,
    window: Window | None,
    *,
    out_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Which pixels of `window` hold data: GDAL's dataset mask, unless its alpha band is data.

    GDAL masks by the first band tagged alpha; when that band holds data (see
    :func:`open_scene`), pixels are masked by the nodata value alone, as GDAL
    would without the alpha tag (a pixel is invalid where every band is nodata).
    Every reader of scene pixels (the run, the preview, training statistics)
    should use it, so they agree on what is valid.

    Parameters
    ----------
    ds : rasterio DatasetReader
        The open scene.
    path : str
        Its path (the alpha decision is cached per file).
    window : Window or None
        The window to read; None for the whole scene.
    out_shape : (int, int), optional
        Decimated read (height, width).

    Returns
    -------
    ndarray of bool
    """
    if ColorInterp.alpha in ds.colorinterp:
        data_alpha = {b for b, _, _ in _data_alpha(path)}
        alpha = [b for b, ci in enumerate(ds.colorinterp, start=1) if ci == ColorInterp.alpha]
        if data_alpha:
            real = [b for b in alpha if b not in data_alpha]
            kw: dict[str, Any] = {"window": window} | ({"out_shape": out_shape} if out_shape else {})
            if real:
                return np.asarray(ds.read(real[0], **kw)) > 0
            if ds.nodata is None:
                shape = out_shape or (
                    (int(window.height), int(window.width)) if window is not None else (ds.height, ds.width)
                )
                return np.ones(shape, dtype=bool)
            kw["out_shape"] = (ds.count, *out_shape) if out_shape else None
            values = ds.read(**{k: v for k, v in kw.items() if v is not None})
            return np.asarray((values != ds.nodata).any(axis=0))
    mask = ds.dataset_mask(window=window, out_shape=out_shape) if out_shape else ds.dataset_mask(window=window)
    return np.asarray(mask) > 0


def _cast(value: float, dtype: np.dtype) -> Any:
    """`value` in `dtype`: rounded and clipped for integer types."""
    if np.issubdtype(dtype, np.integer):
        lim = np.iinfo(dtype)
        return np.asarray(np.clip(np.rint(value), lim.min, lim.max)).astype(dtype)[()]
    return np.asarray(value).astype(dtype)[()]


def file_checksum(path: str | os.PathLike[str]) -> str:
    """A scene's identity in run reports: ``sha256:<hex>`` of a whole local file.

    A remote scene (URL, ``s3://``, ``/vsi…``) is not read whole for this: its
    identity is ``etag:<ETag>:size:<bytes>`` from one HEAD-like request (see
    :func:`geoseg.remote.remote_checksum` for the fallbacks without an ETag).
    """
    if is_remote(path):
        return remote_checksum(gdal_path(path))
    return f"sha256:{sha256_file(path)}"
