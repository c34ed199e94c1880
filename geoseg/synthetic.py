"""Seeded synthetic aerial scenes with exact ISPRS ground truth.

The generator draws a small town on an infinite plane -- a street grid with
sidewalks, markings and parked cars, residential lots with pitched roofs and
gardens, perimeter blocks, commercial buildings with parking lots, parks,
fields and construction sites -- and renders any window of it as an aerial
image (RGB, RGB+NIR or NIR-R-G) together with its label in the six ISPRS
classes (:data:`CLASS_NAMES`).

Everything is a pure function of the seed and of *global* pixel coordinates,
so a scene of any size is rendered window by window, in any order and with
any window size, and the pixels come out byte-identical:

* the layout lives on a coarse grid of street *cells* (about 64 m) in a
  (seeded) rotated frame; the streets run along cell boundaries, decided by
  hashing the line and segment indices, and the content of cell ``(i, j)``
  comes from a random generator seeded by ``(seed, i, j)`` alone;
* a window rasterises only the objects of the cells that can reach it
  (objects, crowns and cast shadows stay within ``_REACH`` metres of their
  cell), painting them in one global order with a height buffer;
* textures and illumination are value noise on lattices of global metric
  coordinates, pixel noise is a hash of the global pixel index, and the
  light optical blur is computed on a one-pixel halo and cropped.

Object sizes are in metres (cars about 4.5 m x 1.8 m, buildings 8-45 m, roads
5.5-14 m, tree crowns 3-11 m) and are converted with ``pixel_size``, so the
same seed shows the same town at 5 cm and at 30 cm, and the town does not
depend on the scene's size either (a larger scene extends a smaller one; only
the optional nodata collar follows the scene edges).

Only arithmetic that is exactly rounded elementwise (``+ - * /``, ``sqrt``,
comparisons, ``floor``) touches per-pixel data, which is what makes windows
agree to the bit. Results are identical across runs, processes and hash
seeds; on another platform, a different C math library could move an object
by an ulp and flip a rare edge pixel. Rendering is thread-safe (each call
owns its buffers; the layout caches hold immutable objects).
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import affine
import numpy as np

from geoseg.classes import ISPRS, NODATA
from geoseg.errors import ConfigError

__all__ = ["CLASS_NAMES", "SceneSpec", "render_window", "write_copies", "write_scene"]

logger = logging.getLogger(__name__)

#: Names of the ISPRS classes, indexed by label id (label value 255 is nodata).
CLASS_NAMES: tuple[str, ...] = ISPRS.names

_IMP, _BLD, _LOW, _TREE, _CAR, _CLU = range(6)

# ---------------------------------------------------------------------------
# Layout constants (metres)
# ---------------------------------------------------------------------------
_CELL = 64.0  # nominal spacing of the street grid
_JITTER = 0.3 * _CELL  # total range of the per-line offset of a grid line
# Every object, crown and cast shadow lies within _REACH metres of the
# boundary lines of the cell that owns it; a window gathers cells this far out.
_REACH = 48.0
_MAX_HEIGHT = 20.0  # buildings and trees never exceed this
_MIN_SUN_ELEVATION = math.radians(40.0)  # shadows are at most 20 / tan(40 deg) = 24 m
_CHUNK = 512  # render_window works on chunks of at most this many pixels a side (cache-friendly)

_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF

# Materials: per-material amplitudes of the texture noise fields.
(
    _M_GRASS,
    _M_FIELD,
    _M_ASPHALT,
    _M_PAVING,
    _M_MARKING,
    _M_TILE,
    _M_FLAT,
    _M_GRAVEL,
    _M_CAR,
    _M_TREE,
    _M_HEDGE,
    _M_SOIL,
    _M_DEBRIS,
    _M_WATER,
    _M_METAL,
) = range(15)
#                       fine   medium coarse leaf
_TEXTURE = np.array(
    [
        [0.10, 0.16, 0.12, 0.22],  # grass
        [0.08, 0.10, 0.14, 0.12],  # field
        [0.16, 0.06, 0.12, 0.00],  # asphalt
        [0.10, 0.06, 0.08, 0.00],  # paving / concrete
        [0.05, 0.04, 0.05, 0.00],  # marking
        [0.08, 0.05, 0.07, 0.00],  # tiles
        [0.07, 0.09, 0.12, 0.00],  # flat roof
        [0.24, 0.08, 0.08, 0.00],  # gravel
        [0.03, 0.00, 0.00, 0.00],  # car paint
        [0.14, 0.10, 0.06, 0.85],  # tree crown
        [0.12, 0.06, 0.00, 0.60],  # hedge
        [0.20, 0.22, 0.16, 0.06],  # soil
        [0.26, 0.16, 0.06, 0.20],  # debris
        [0.02, 0.05, 0.06, 0.00],  # water
        [0.04, 0.02, 0.00, 0.00],  # metal
    ],
    dtype=np.float32,
)
_TEXTURE_COLUMNS = tuple(np.ascontiguousarray(_TEXTURE[:, k]) for k in range(4))
# Darkening of shadowed pixels per channel (R, G, B, NIR); skylight is bluish.
_SHADOW = np.array([0.42, 0.46, 0.58, 0.38], dtype=np.float32)
_NOISE_SCALES = (
    0.12,
    1.0,
    5.0,
    0.45,
    0.71,
)  # fine, medium, coarse, leaf, leaf2 lattice spacing (m)
_ILLUM_SCALE = 90.0

# ---------------------------------------------------------------------------
# Palettes: display reflectance 0..1 for (R, G, B, NIR)
# ---------------------------------------------------------------------------
_Colour = tuple[float, float, float, float]
_LAWN = (0.30, 0.42, 0.17, 0.62)
_LAWN_DRY = (0.52, 0.50, 0.31, 0.46)
_FIELD_GREEN = (0.36, 0.46, 0.22, 0.60)
_FIELD_YELLOW = (0.64, 0.57, 0.35, 0.45)
_TREES: tuple[_Colour, ...] = (
    (0.17, 0.27, 0.11, 0.55),
    (0.22, 0.32, 0.13, 0.60),
    (0.27, 0.34, 0.16, 0.52),
    (0.16, 0.21, 0.12, 0.44),
    (0.42, 0.36, 0.16, 0.45),
)
_TREE_W = (0.32, 0.3, 0.2, 0.14, 0.04)
_HEDGE = (0.19, 0.30, 0.12, 0.55)
_ASPHALT: tuple[_Colour, ...] = (
    (0.36, 0.37, 0.38, 0.33),
    (0.47, 0.47, 0.46, 0.42),
    (0.26, 0.27, 0.29, 0.24),
)
_PAVING: tuple[_Colour, ...] = (
    (0.62, 0.60, 0.57, 0.55),
    (0.52, 0.51, 0.50, 0.47),
    (0.56, 0.42, 0.36, 0.46),
)
_GRAVEL_PATH = (0.62, 0.57, 0.48, 0.52)
_MARKING = (0.86, 0.86, 0.84, 0.78)
_ROOF_PITCHED: tuple[_Colour, ...] = (
    (0.62, 0.30, 0.22, 0.45),  # red tiles
    (0.72, 0.42, 0.28, 0.50),  # terracotta
    (0.45, 0.31, 0.25, 0.38),  # brown
    (0.42, 0.42, 0.43, 0.38),  # grey, like asphalt
    (0.20, 0.21, 0.23, 0.20),  # dark slate
    (0.30, 0.38, 0.22, 0.45),  # mossy green, rare
)
_ROOF_PITCHED_W = (0.36, 0.12, 0.12, 0.19, 0.19, 0.02)
_ROOF_FLAT: tuple[_Colour, ...] = (
    (0.43, 0.43, 0.44, 0.40),  # grey concrete
    (0.70, 0.69, 0.66, 0.62),  # light membrane
    (0.24, 0.24, 0.26, 0.22),  # dark
    (0.55, 0.52, 0.46, 0.50),  # gravel
    (0.15, 0.15, 0.16, 0.14),  # bitumen
    (0.31, 0.41, 0.20, 0.58),  # green roof, rare
)
_ROOF_FLAT_W = (0.3, 0.2, 0.2, 0.15, 0.1, 0.05)
_CARS: tuple[_Colour, ...] = (
    (0.86, 0.86, 0.87, 0.80),
    (0.66, 0.67, 0.69, 0.62),
    (0.44, 0.45, 0.47, 0.40),
    (0.09, 0.09, 0.10, 0.10),
    (0.12, 0.16, 0.32, 0.20),
    (0.60, 0.11, 0.10, 0.45),
    (0.16, 0.30, 0.19, 0.30),
    (0.85, 0.74, 0.20, 0.70),
    (0.68, 0.63, 0.50, 0.60),
)
_CARS_W = (0.2, 0.18, 0.15, 0.17, 0.1, 0.1, 0.04, 0.02, 0.04)
_SOIL: tuple[_Colour, ...] = (
    (0.46, 0.37, 0.27, 0.40),
    (0.33, 0.27, 0.21, 0.31),
    (0.72, 0.65, 0.50, 0.62),
)
_WATER = (0.12, 0.19, 0.20, 0.05)
_POOL = (0.36, 0.70, 0.80, 0.10)
_CONTAINERS: tuple[_Colour, ...] = (
    (0.15, 0.30, 0.55, 0.30),
    (0.20, 0.40, 0.25, 0.30),
    (0.60, 0.16, 0.12, 0.45),
    (0.80, 0.70, 0.16, 0.60),
    (0.50, 0.31, 0.20, 0.40),
    (0.50, 0.50, 0.52, 0.45),
)
_METAL = (0.68, 0.69, 0.70, 0.62)
_GLASS = (0.14, 0.16, 0.20, 0.12)


# ---------------------------------------------------------------------------
# Public value object
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SceneSpec:
    """Size, georeferencing and appearance of a synthetic scene.

    Parameters
    ----------
    width, height : int
        Scene size in pixels.
    pixel_size : float
        Ground sampling distance in CRS units (metres) per pixel; objects
        keep their real-world size whatever the pixel size.
    crs : str
        Any CRS string rasterio understands; written into the GeoTIFFs.
    origin : tuple of float
        ``(x, y)`` of the upper-left corner of the scene (north-up grid).
    seed : int
        Selects the town. Only ``seed mod 2**64`` matters.
    bands : {"rgb", "rgbn", "irrg"}
        Image bands: red-green-blue, RGB plus near infrared, or
        NIR-red-green like ISPRS Vaihingen.
    dtype : {"uint8", "uint16"}
        Image data type; ``uint16`` scales reflectance-like values to
        roughly 0..10000.
    nodata : int or None
        If set, an irregular collar (and usually one cut corner) is written
        with this value in every band and 255 in the label; valid pixels
        never have this value in all bands at once.

    Raises
    ------
    geoseg.errors.ConfigError
        If a field is out of range (a ``ValueError``); the message names it.

    Examples
    --------
    >>> spec = SceneSpec(width=512, height=256, pixel_size=0.2, seed=3)
    >>> spec.count, spec.transform.a
    (3, 0.2)
    """

    width: int
    height: int
    pixel_size: float = 0.1
    crs: str = "EPSG:32633"
    origin: tuple[float, float] = (500000.0, 5800000.0)
    seed: int = 0
    bands: Literal["rgb", "rgbn", "irrg"] = "rgb"
    dtype: Literal["uint8", "uint16"] = "uint8"
    nodata: int | None = None

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"SceneSpec.{name} must be a positive integer, got {value!r}")
        size_ok = isinstance(self.pixel_size, (int, float, np.floating))
        if isinstance(self.pixel_size, bool) or not (size_ok and math.isfinite(self.pixel_size)):
            raise ConfigError(f"SceneSpec.pixel_size must be a finite number, got {self.pixel_size!r}")
        if self.pixel_size <= 0:
            raise ConfigError(
                f"SceneSpec.pixel_size must be > 0 metres, got {self.pixel_size!r}; "
                "typical aerial values are 0.05 to 0.3"
            )
        try:
            origin = tuple(float(v) for v in self.origin)
        except (TypeError, ValueError):
            origin = ()
        if len(origin) != 2 or not all(math.isfinite(v) for v in origin):
            raise ConfigError(f"SceneSpec.origin must be two finite numbers (x, y), got {self.origin!r}")
        object.__setattr__(self, "origin", origin)  # a list would make the spec unhashable
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ConfigError(f"SceneSpec.seed must be an integer, got {self.seed!r}")
        if self.bands not in _BAND_ORDER:
            raise ConfigError(f"SceneSpec.bands must be one of {sorted(_BAND_ORDER)}, got {self.bands!r}")
        if self.dtype not in _DTYPE_SCALE:
            raise ConfigError(f"SceneSpec.dtype must be 'uint8' or 'uint16', got {self.dtype!r}")
        if self.nodata is not None:
            info = np.iinfo(self.dtype)
            if (
                isinstance(self.nodata, bool)
                or not isinstance(self.nodata, (int, np.integer))
                or not info.min <= self.nodata <= info.max
            ):
                raise ConfigError(
                    f"SceneSpec.nodata={self.nodata!r} does not fit dtype {self.dtype} "
                    f"({info.min}..{info.max}); pass an integer in that range or None"
                )

    @property
    def transform(self) -> affine.Affine:
        """Affine transform from pixel (col, row) to CRS (x, y), north up."""
        x0, y0 = self.origin
        return affine.Affine(self.pixel_size, 0.0, float(x0), 0.0, -self.pixel_size, float(y0))

    @property
    def count(self) -> int:
        """Number of image bands (3 for ``rgb`` and ``irrg``, 4 for ``rgbn``)."""
        return len(_BAND_ORDER[self.bands])


_BAND_ORDER: dict[str, tuple[int, ...]] = {
    "rgb": (0, 1, 2),
    "rgbn": (0, 1, 2, 3),
    "irrg": (3, 0, 1),
}
_BAND_NAMES: dict[str, tuple[str, ...]] = {
    "rgb": ("red", "green", "blue"),
    "rgbn": ("red", "green", "blue", "nir"),
    "irrg": ("nir", "red", "green"),
}
_DTYPE_SCALE = {"uint8": 255.0, "uint16": 10000.0}


# ---------------------------------------------------------------------------
# Hashing and noise (all functions of global coordinates)
# ---------------------------------------------------------------------------
def _fmix(h: np.ndarray) -> np.ndarray:
    """Mix a uint32 array in place (lowbias32 finaliser) and return it."""
    h ^= h >> 16
    h *= np.uint32(0x7FEB352D)
    h ^= h >> 15
    h *= np.uint32(0x846CA68B)
    h ^= h >> 16
    return h


def _fmix_py(x: int) -> int:
    x &= _MASK32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK32
    x ^= x >> 16
    return x


def _key32(*parts: int) -> int:
    """Hash integers (any sign and size) to one uint32."""
    h = 0x2545F491
    for part in parts:
        part &= _MASK64
        h = _fmix_py(h ^ _fmix_py(part & _MASK32) ^ _fmix_py((part >> 32) + 0x68E31DA4))
        h = (h * 0x9E3779B1 + 0x7F4A7C15) & _MASK32
    return _fmix_py(h)


def _u01(*parts: int) -> float:
    """A uniform number in [0, 1) hashed from integers."""
    return _key32(*parts) / 4294967296.0


def _to_u32(values: np.ndarray) -> np.ndarray:
    return (values.astype(np.int64) & _MASK32).astype(np.uint32)


def _hash2d(rows: np.ndarray, cols: np.ndarray, key: int) -> np.ndarray:
    """uint32 hash of every (row, col) pair of two integer vectors."""
    hr = _fmix(_to_u32(rows) * np.uint32(0x9E3779B1) + np.uint32(key))
    hc = _fmix(_to_u32(cols) * np.uint32(0x85EBCA77) + np.uint32(_fmix_py(key + 1)))
    return _fmix(hr[:, None] ^ hc[None, :])


def _value_noise(ys: np.ndarray, xs: np.ndarray, spacing: float, key: int) -> np.ndarray:
    """Smooth value noise in [0, 1) at metric coordinates ``ys`` x ``xs``.

    The lattice is anchored at the scene origin and its values are hashed
    from the lattice indices, so a pixel's value does not depend on which
    window it is computed in. Interpolation is separable: along x for the
    lattice rows the window needs, then along y.
    """
    gy = ys / spacing
    gx = xs / spacing
    iy = np.floor(gy)
    ix = np.floor(gx)
    fy = (gy - iy).astype(np.float32)
    fx = (gx - ix).astype(np.float32)
    iy = iy.astype(np.int64)
    ix = ix.astype(np.int64)
    y0, x0 = int(iy[0]), int(ix[0])
    lattice = _hash2d(np.arange(y0, int(iy[-1]) + 2), np.arange(x0, int(ix[-1]) + 2), key)
    lat = (lattice >> 8).astype(np.float32) * np.float32(1.0 / 16777216.0)
    wx = fx * fx * (3 - 2 * fx)
    wy = fy * fy * (3 - 2 * fy)
    jx = ix - x0
    left = lat[:, jx]
    rows = left + (lat[:, jx + 1] - left) * wx
    jy = iy - y0
    top = rows[jy]
    return top + (rows[jy + 1] - top) * wy[:, None]


def _noise1d(t: np.ndarray, spacing: float, key: int) -> np.ndarray:
    """Smooth 1-D value noise in [0, 1) at positions ``t`` (any units)."""
    g = t / spacing
    i = np.floor(g)
    f = g - i
    i = i.astype(np.int64)
    lo = _hash2d(np.zeros(1, np.int64), i, key)[0]
    hi = _hash2d(np.zeros(1, np.int64), i + 1, key)[0]
    vlo = (lo >> 8).astype(np.float64) / 16777216.0
    vhi = (hi >> 8).astype(np.float64) / 16777216.0
    w = f * f * (3 - 2 * f)
    return vlo + (vhi - vlo) * w


# ---------------------------------------------------------------------------
# Seeded draws for the layout (Python's Mersenne twister: random() is stable
# across Python versions for a given integer seed)
# ---------------------------------------------------------------------------
class _Rng:
    __slots__ = ("_random",)

    def __init__(self, *key: int) -> None:
        seed = 0
        for part in key:
            seed = (seed << 64) | (part & _MASK64)
        self._random = random.Random(seed).random

    def u(self, lo: float = 0.0, hi: float = 1.0) -> float:
        return lo + (hi - lo) * self._random()

    def chance(self, p: float) -> bool:
        return self._random() < p

    def integer(self, lo: int, hi: int) -> int:
        """Integer in ``[lo, hi]`` inclusive."""
        return min(hi, lo + int(self._random() * (hi - lo + 1)))

    def pick(self, items: Sequence[Any], weights: Sequence[float] | None = None) -> Any:
        if weights is None:
            return items[min(len(items) - 1, int(self._random() * len(items)))]
        x = self._random() * sum(weights)
        for item, weight in zip(items, weights, strict=True):
            x -= weight
            if x < 0:
                return item
        return items[-1]

    def colour(self, base: _Colour, spread: float = 0.12, tint: float = 0.025) -> np.ndarray:
        k = self.u(1 - spread, 1 + spread)
        return np.array([max(0.0, min(1.0, c * k + self.u(-tint, tint))) for c in base], dtype=np.float32)


# ---------------------------------------------------------------------------
# The world: frame, sun and street grid of one seed
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _World:
    seed: int
    cos: float  # rotation of the street grid: image = R(theta) @ grid
    sin: float
    sun: tuple[float, float, float]  # unit vector towards the sun (x east, y south, z up)
    shadow: tuple[float, float]  # ground displacement of a shadow per metre of height

    def to_image(self, gu: float, gv: float) -> tuple[float, float]:
        return self.cos * gu - self.sin * gv, self.sin * gu + self.cos * gv

    def to_grid(self, x: float, y: float) -> tuple[float, float]:
        return self.cos * x + self.sin * y, -self.sin * x + self.cos * y


@lru_cache(maxsize=64)
def _world(seed: int) -> _World:
    rng = _Rng(seed, 0x5EED)
    theta = 0.0 if rng.chance(0.4) else rng.u(-math.pi / 4, math.pi / 4)
    azimuth = math.pi / 2 + rng.u(-1.0, 1.0)  # towards the sun, roughly south (+y)
    elevation = rng.u(_MIN_SUN_ELEVATION, math.radians(62.0))
    ce = math.cos(elevation)
    sun = (math.cos(azimuth) * ce, math.sin(azimuth) * ce, math.sin(elevation))
    length = 1.0 / math.tan(elevation)
    shadow = (-math.cos(azimuth) * length, -math.sin(azimuth) * length)
    return _World(seed, math.cos(theta), math.sin(theta), sun, shadow)


@dataclass(frozen=True)
class _Line:
    pos: float  # grid coordinate of the centre line
    main: bool
    half: float  # half the carriageway width
    sidewalk: float
    parking: float  # probability of a parked car per slot
    avenue: bool  # street trees
    asphalt: _Colour


@lru_cache(maxsize=65536)
def _line(seed: int, axis: int, index: int) -> _Line:
    rng = _Rng(seed, 0x11AE, axis, index)
    main = rng.chance(0.25)
    width = rng.u(9.5, 13.5) if main else rng.u(5.5, 8.0)
    return _Line(
        pos=index * _CELL + (rng.u() - 0.5) * _JITTER,
        main=main,
        half=width / 2,
        sidewalk=rng.u(1.6, 3.0) if (main or rng.chance(0.8)) else 0.0,
        parking=rng.u(0.25, 0.7) if rng.chance(0.7) else 0.0,
        avenue=rng.chance(0.5),
        asphalt=rng.pick(_ASPHALT, (0.6, 0.25, 0.15)),
    )


@lru_cache(maxsize=65536)
def _has_segment(seed: int, axis: int, line: int, seg: int) -> bool:
    """Whether the street on grid line ``line`` of ``axis`` runs along cell ``seg``."""
    if _line(seed, axis, line).main:
        return True
    return _u01(seed, 0x5E6, axis, line, seg) < 0.72


def _inset(seed: int, axis: int, line: int, seg: int) -> float:
    """How far the street on this line segment reaches from the line (0 without street)."""
    if not _has_segment(seed, axis, line, seg):
        return 0.0
    ln = _line(seed, axis, line)
    return ln.half + ln.sidewalk


# ---------------------------------------------------------------------------
# Canvas: the arrays of one window while it is being painted
# ---------------------------------------------------------------------------
class _Canvas:
    """Per-window buffers; rows/cols are global pixel indices ``r0..r0+h``."""

    def __init__(self, spec: SceneSpec, world: _World, r0: int, c0: int, h: int, w: int) -> None:
        self.ps = float(spec.pixel_size)
        self.world = world
        self.r0, self.c0, self.h, self.w = r0, c0, h, w
        self.nch = 3 if spec.bands == "rgb" else 4
        self.xs = (np.arange(c0, c0 + w, dtype=np.float64) + 0.5) * self.ps
        self.ys = (np.arange(r0, r0 + h, dtype=np.float64) + 0.5) * self.ps
        self.label = np.full((h, w), _LOW, dtype=np.uint8)
        self.mat = np.full((h, w), _M_GRASS, dtype=np.uint8)
        self.col = np.empty((self.nch, h, w), dtype=np.float32)
        self.col[:] = np.asarray(_LAWN[: self.nch], dtype=np.float32)[:, None, None]
        self.height = np.zeros((h, w), dtype=np.float32)
        self.shade = np.ones((h, w), dtype=np.float32)
        key = _key32(world.seed, 0x7E47)
        self.noise = tuple(
            _value_noise(self.ys, self.xs, max(scale, self.ps), _fmix_py(key + k))
            for k, scale in enumerate(_NOISE_SCALES)
        )
        self.bounds = (
            self.xs[0] - self.ps,
            self.xs[-1] + self.ps,
            self.ys[0] - self.ps,
            self.ys[-1] + self.ps,
        )

    def slices(self, bb: tuple[float, float, float, float]) -> tuple[slice, slice] | None:
        """Pixel slices covering a metric bounding box (a superset; masks decide)."""
        xmin, xmax, ymin, ymax = bb
        inv = 1.0 / self.ps
        c_lo = max(math.floor(xmin * inv - 0.5) - self.c0, 0)
        c_hi = min(math.ceil(xmax * inv - 0.5) + 1 - self.c0, self.w)
        r_lo = max(math.floor(ymin * inv - 0.5) - self.r0, 0)
        r_hi = min(math.ceil(ymax * inv - 0.5) + 1 - self.r0, self.h)
        if c_lo >= c_hi or r_lo >= r_hi:
            return None
        return slice(r_lo, r_hi), slice(c_lo, c_hi)

    def put(
        self,
        sl: tuple[slice, slice],
        mask: np.ndarray,
        z: float,
        label: int,
        mat: int,
        colour: np.ndarray,
        shade: float | np.ndarray = 1.0,
    ) -> None:
        """Paint where ``mask`` holds and nothing taller is already there."""
        height = self.height[sl]
        m = mask & (height <= z)
        np.copyto(height, np.float32(z), where=m)
        np.copyto(self.label[sl], label, where=m)
        np.copyto(self.mat[sl], mat, where=m)
        np.copyto(self.shade[sl], shade, where=m)
        if colour.ndim == 1:
            np.copyto(self.col[(slice(None), *sl)], colour[: self.nch, None, None], where=m[None])
        else:
            np.copyto(self.col[(slice(None), *sl)], colour[: self.nch], where=m[None])


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1] and a[2] <= b[3] and b[2] <= a[3]


# ---------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------
class _Box:
    """Oriented rectangle in image metres: centre, half length (u), half width (v)."""

    __slots__ = ("ca", "cx", "cy", "hl", "hw", "sa")

    def __init__(self, cx: float, cy: float, hl: float, hw: float, angle: float) -> None:
        self.cx, self.cy, self.hl, self.hw = cx, cy, hl, hw
        self.ca, self.sa = math.cos(angle), math.sin(angle)

    def bbox(self, grow: float = 0.0) -> tuple[float, float, float, float]:
        ex = abs(self.hl * self.ca) + abs(self.hw * self.sa) + grow
        ey = abs(self.hl * self.sa) + abs(self.hw * self.ca) + grow
        return (self.cx - ex, self.cx + ex, self.cy - ey, self.cy + ey)

    def local(self, cv: _Canvas, sl: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        dx = (cv.xs[sl[1]] - self.cx).astype(np.float32)[None, :]
        dy = (cv.ys[sl[0]] - self.cy).astype(np.float32)[:, None]
        return dx * self.ca + dy * self.sa, dy * self.ca - dx * self.sa

    def inside(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return (np.abs(u) <= self.hl) & (np.abs(v) <= self.hw)


_BBox = tuple[float, float, float, float]


def _shadow_bbox(bb: _BBox, world: _World, h: float) -> _BBox:
    dx, dy = world.shadow[0] * h, world.shadow[1] * h
    return (
        bb[0] + min(dx, 0.0),
        bb[1] + max(dx, 0.0),
        bb[2] + min(dy, 0.0),
        bb[3] + max(dy, 0.0),
    )


class _Obj:
    """Something painted into a window; ``key`` fixes the global paint order."""

    __slots__ = ("bb", "key", "sb")
    key: tuple[int, int, int, int]  # (layer, cell row, cell col, sequence)
    bb: tuple[float, float, float, float]  # what the object paints (image metres)
    sb: tuple[float, float, float, float]  # what its shadow may darken (casters only)
    casts = False

    def paint(self, cv: _Canvas) -> None:
        raise NotImplementedError

    def cast(self, cv: _Canvas, shadow: np.ndarray) -> None:
        return None


class _Flat(_Obj):
    """A ground-level rectangle: lawn, road, sidewalk, lot, field, pool, marking.

    ``stripes`` = (period, duty, along_u, amplitude): periodic pattern along
    the box axes; with amplitude 0 it is a dash mask (pixels outside the duty
    fraction are not painted), otherwise a brightness modulation. ``colour2``
    blends towards a second colour with the coarse noise (dry grass patches).
    """

    __slots__ = ("box", "colour", "colour2", "label", "mat", "stripes", "z")

    def __init__(
        self,
        box: _Box,
        label: int,
        mat: int,
        colour: np.ndarray,
        *,
        colour2: np.ndarray | None = None,
        stripes: tuple[float, float, bool, float] | None = None,
        z: float = 0.0,
    ) -> None:
        self.box, self.label, self.mat, self.colour = box, label, mat, colour
        self.colour2, self.stripes, self.z = colour2, stripes, z
        self.bb = box.bbox()

    def paint(self, cv: _Canvas) -> None:
        sl = cv.slices(self.bb)
        if sl is None:
            return
        u, v = self.box.local(cv, sl)
        mask = self.box.inside(u, v)
        shade: float | np.ndarray = 1.0
        if self.stripes is not None:
            period, duty, along_u, amp = self.stripes
            t = (u if along_u else v) * np.float32(1.0 / period)
            frac = t - np.floor(t)
            if amp == 0.0:
                mask &= frac < duty
            else:
                shade = 1 - amp + np.float32(2 * amp) * (frac < duty)
        colour = self.colour
        if self.colour2 is not None:
            n = cv.noise[2][sl]
            w = np.clip(n * np.float32(2.2) - np.float32(0.75), 0, 1)[None]
            c1 = self.colour[: cv.nch, None, None]
            colour = c1 + (self.colour2[: cv.nch, None, None] - c1) * w
        cv.put(sl, mask, self.z, self.label, self.mat, colour, shade)


class _Blob(_Obj):
    """An irregular ellipse: bare soil, debris pile, pond, sand pit, flower bed."""

    __slots__ = ("box", "colour", "colourful", "label", "mat", "rough")

    def __init__(
        self,
        box: _Box,
        label: int,
        mat: int,
        colour: np.ndarray,
        rough: float,
        colourful: bool = False,
    ) -> None:
        self.box, self.label, self.mat, self.colour = box, label, mat, colour
        self.rough, self.colourful = rough, colourful
        self.bb = box.bbox(grow=0.3 * max(box.hl, box.hw))

    def paint(self, cv: _Canvas) -> None:
        sl = cv.slices(self.bb)
        if sl is None:
            return
        u, v = self.box.local(cv, sl)
        u = u * np.float32(1.0 / self.box.hl)
        v = v * np.float32(1.0 / self.box.hw)
        edge = np.float32(1) + np.float32(self.rough) * (cv.noise[1][sl] - np.float32(0.5))
        mask = u * u + v * v <= edge
        colour: np.ndarray = self.colour
        if self.colourful:
            # Mixed debris: each channel follows a different noise field.
            fields = (cv.noise[1][sl], cv.noise[3][sl], cv.noise[0][sl], cv.noise[1][sl])
            colour = np.stack(
                [self.colour[k] + np.float32(0.55) * (fields[k] - np.float32(0.5)) for k in range(cv.nch)]
            )
        cv.put(sl, mask, 0.0, self.label, self.mat, colour)


class _Prism(_Obj):
    """A box extruded to height ``z``: building wing, car, container, hedge, roof unit."""

    __slots__ = ("box", "colour", "label", "mat", "z")
    casts = True

    def __init__(self, box: _Box, z: float, label: int, mat: int, colour: np.ndarray, world: _World) -> None:
        self.box, self.z, self.label, self.mat, self.colour = box, z, label, mat, colour
        self.bb = box.bbox()
        self.sb = _shadow_bbox(self.bb, world, z)

    def shading(self, cv: _Canvas, u: np.ndarray, v: np.ndarray) -> float | np.ndarray:
        return 1.0

    def paint(self, cv: _Canvas) -> None:
        sl = cv.slices(self.bb)
        if sl is None:
            return
        u, v = self.box.local(cv, sl)
        cv.put(
            sl,
            self.box.inside(u, v),
            self.z,
            self.label,
            self.mat,
            self.colour,
            self.shading(cv, u, v),
        )

    def cast(self, cv: _Canvas, shadow: np.ndarray) -> None:
        # A pixel at height hp is shaded if the ray towards the sun, rising s
        # metres while moving -s*d horizontally, passes through the prism
        # for some s in [0, z - hp]; a slab test per box axis.
        sl = cv.slices(self.sb)
        if sl is None:
            return
        box = self.box
        hp = cv.height[sl]
        u, v = box.local(cv, sl)
        dx, dy = cv.world.shadow
        du = dx * box.ca + dy * box.sa
        dv = dy * box.ca - dx * box.sa
        lo = np.zeros(u.shape, dtype=np.float32)
        hi = np.float32(self.z) - hp
        for w0, d, half in ((u, du, box.hl), (v, dv, box.hw)):
            if abs(d) > 1e-6:
                inv = 1.0 / d
                a = (w0 - np.float32(half)) * np.float32(inv)
                b = (w0 + np.float32(half)) * np.float32(inv)
                if d < 0:
                    a, b = b, a
                lo = np.maximum(lo, a)
                hi = np.minimum(hi, b)
            else:
                hi = np.where(np.abs(w0) <= half, hi, np.float32(-1))
        shadow[sl] |= (lo <= hi) & (hp < np.float32(self.z - 0.05))


class _Wing(_Prism):
    """One rectangular building wing; the ridge of a pitched roof runs along u."""

    __slots__ = ("facets", "roof", "tiles")

    def __init__(
        self,
        box: _Box,
        z: float,
        roof: str,
        colour: np.ndarray,
        mat: int,
        pitch: float,
        world: _World,
    ) -> None:
        super().__init__(box, z, _BLD, mat, colour, world)
        self.roof = roof
        self.tiles = mat == _M_TILE
        # Lambert shading of the four facets (+v, -v, +u, -u) relative to flat.
        sx, sy, sz = world.sun
        sp, cp = math.sin(pitch), math.cos(pitch)
        facets = []
        for fx, fy in ((-box.sa, box.ca), (box.sa, -box.ca), (box.ca, box.sa), (-box.ca, -box.sa)):
            lam = (fx * sx + fy * sy) * sp + cp * sz
            facets.append(0.3 + 0.7 * max(lam, 0.0) / sz)
        self.facets = tuple(facets)

    def shading(self, cv: _Canvas, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        box = self.box
        au, av = np.abs(u), np.abs(v)
        du, dv = np.float32(box.hl) - au, np.float32(box.hw) - av
        edge = np.minimum(du, dv)
        f = self.facets
        if self.roof == "flat":
            shade = np.where(
                edge < 0.4,
                np.float32(1.12),
                np.where(edge < 0.7, np.float32(0.88), np.float32(1.0)),
            )
        else:
            side = np.where(v >= 0, np.float32(f[0]), np.float32(f[1]))
            if self.roof == "hip":
                end = np.where(u >= 0, np.float32(f[2]), np.float32(f[3]))
                shade = np.where(dv <= du, side, end)
            else:
                shade = side
            if self.tiles and cv.ps < 0.2:
                # Courses of tiles parallel to the ridge; fades out where pixels are too coarse.
                amp = np.float32(0.14 * min(1.0, (0.2 - cv.ps) / 0.1))
                t = av * np.float32(1 / 0.34)
                shade = shade * (np.float32(1) - amp + amp * (t - np.floor(t)))
            shade = np.where(av < 0.12, shade * np.float32(1.08), shade)
            shade = np.where(edge < 0.25, shade * np.float32(0.8), shade)
        return shade.astype(np.float32, copy=False)


class _Car(_Prism):
    """A car: body colour with dark windscreens and a lighter roof."""

    __slots__ = ()

    def __init__(self, box: _Box, colour: np.ndarray, world: _World) -> None:
        super().__init__(box, 1.5, _CAR, _M_CAR, colour, world)

    def shading(self, cv: _Canvas, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        hl, hw = self.box.hl, self.box.hw
        shade = np.where(
            (u > 0.12 * hl) & (u < 0.5 * hl),
            np.float32(0.3),
            np.where(
                (u > -0.8 * hl) & (u < -0.55 * hl),
                np.float32(0.35),
                np.where((u >= -0.55 * hl) & (u <= 0.12 * hl), np.float32(1.06), np.float32(0.95)),
            ),
        )
        return np.where(np.abs(v) > 0.82 * hw, shade * np.float32(0.82), shade)


class _Tree(_Obj):
    """A round, lumpy, sphere-shaded crown from height ``base`` to ``top``."""

    __slots__ = ("base", "colour", "cx", "cy", "label", "mat", "r", "top")
    casts = True

    def __init__(
        self,
        cx: float,
        cy: float,
        r: float,
        top: float,
        colour: np.ndarray,
        world: _World,
        *,
        label: int = _TREE,
        mat: int = _M_TREE,
    ) -> None:
        self.cx, self.cy, self.r, self.top, self.base = cx, cy, r, top, 0.4 * top
        self.colour, self.label, self.mat = colour, label, mat
        g = 0.25 * r
        self.bb = (cx - r - g, cx + r + g, cy - r - g, cy + r + g)
        self.sb = _shadow_bbox(self.bb, world, top)

    def _offsets(self, cv: _Canvas, sl: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        dx = (cv.xs[sl[1]] - self.cx).astype(np.float32)[None, :]
        dy = (cv.ys[sl[0]] - self.cy).astype(np.float32)[:, None]
        return dx, dy

    def _edge(self, cv: _Canvas, sl: tuple[slice, slice]) -> np.ndarray:
        r2 = np.float32(self.r * self.r)
        lobes = np.float32(0.5) * (cv.noise[1][sl] - np.float32(0.5)) + np.float32(0.3) * (
            cv.noise[4][sl] - np.float32(0.5)
        )
        return r2 * (np.float32(1) + lobes)

    def paint(self, cv: _Canvas) -> None:
        sl = cv.slices(self.bb)
        if sl is None:
            return
        dx, dy = self._offsets(cv, sl)
        d2 = dx * dx + dy * dy
        mask = d2 <= self._edge(cv, sl)
        inv = np.float32(1.0 / self.r)
        nz = np.sqrt(np.maximum(np.float32(1) - d2 * (inv * inv), np.float32(0)))
        sx, sy, sz = cv.world.sun
        lam = (dx * np.float32(sx) + dy * np.float32(sy)) * inv + nz * np.float32(sz)
        shade = np.float32(0.4) + np.float32(0.8) * np.maximum(lam, np.float32(0))
        cv.put(sl, mask, self.top, self.label, self.mat, self.colour, shade)

    def cast(self, cv: _Canvas, shadow: np.ndarray) -> None:
        # The crown as a cylinder between base and top: closest approach of
        # the ray towards the sun to the trunk axis, within the crown's heights.
        sl = cv.slices(self.sb)
        if sl is None:
            return
        hp = cv.height[sl]
        dx, dy = self._offsets(cv, sl)
        sx, sy = cv.world.shadow
        dd = sx * sx + sy * sy
        lo = np.maximum(np.float32(self.base) - hp, np.float32(0))
        hi = np.float32(self.top - 0.05) - hp
        s = np.clip((dx * np.float32(sx) + dy * np.float32(sy)) * np.float32(1.0 / dd), lo, hi)
        qx = dx - s * np.float32(sx)
        qy = dy - s * np.float32(sy)
        shadow[sl] |= (lo <= hi) & (qx * qx + qy * qy <= self._edge(cv, sl))


# ---------------------------------------------------------------------------
# Cell contents
# ---------------------------------------------------------------------------
class _Frame:
    """A row of lots: ``along`` follows the street, ``across`` goes inwards from it."""

    __slots__ = ("ax", "ay", "nx", "ny", "ox", "oy")

    def __init__(self, origin: tuple[float, float], along: tuple[float, float], across: tuple[float, float]):
        (self.ox, self.oy), (self.ax, self.ay), (self.nx, self.ny) = origin, along, across

    def point(self, al: float, ac: float) -> tuple[float, float]:
        return self.ox + al * self.ax + ac * self.nx, self.oy + al * self.ay + ac * self.ny

    def angle(self, rot: float) -> float:
        c, s = math.cos(rot), math.sin(rot)
        return math.atan2(c * self.ay + s * self.ny, c * self.ax + s * self.nx)


class _Builder:
    """Collects the objects of one cell, given in grid coordinates."""

    def __init__(self, world: _World, i: int, j: int) -> None:
        self.world, self.i, self.j = world, i, j
        self.items: list[_Obj] = []

    def add(self, layer: int, obj: _Obj) -> None:
        obj.key = (layer, self.j, self.i, len(self.items))
        self.items.append(obj)

    def box(self, gu: float, gv: float, len_u: float, len_v: float, angle: float = 0.0) -> _Box:
        x, y = self.world.to_image(gu, gv)
        theta = math.atan2(self.world.sin, self.world.cos)
        return _Box(x, y, len_u / 2, len_v / 2, angle + theta)

    def rect(self, u0: float, u1: float, v0: float, v1: float) -> _Box:
        return self.box((u0 + u1) / 2, (v0 + v1) / 2, u1 - u0, v1 - v0)

    def fbox(self, fr: _Frame, al: float, ac: float, len_al: float, len_ac: float, rot: float = 0.0) -> _Box:
        gu, gv = fr.point(al, ac)
        return self.box(gu, gv, len_al, len_ac, fr.angle(rot))

    # -- object helpers -----------------------------------------------------
    def tree(self, rng: _Rng, gu: float, gv: float, r: float | None = None) -> None:
        r = rng.u(1.5, 5.2) if r is None else r
        top = min(_MAX_HEIGHT - 2, rng.u(max(4.0, 1.5 * r), 3.0 * r + 4.0))
        colour = rng.colour(rng.pick(_TREES, _TREE_W), spread=0.15)
        x, y = self.world.to_image(gu, gv)
        self.add(10, _Tree(x, y, r, top, colour, self.world))

    def car(self, rng: _Rng, box_args: tuple[float, float, float], angle: float) -> None:
        gu, gv, _ = box_args
        length, width = rng.u(3.9, 5.1), rng.u(1.7, 2.0)
        if rng.chance(0.5):
            angle += math.pi
        colour = rng.colour(rng.pick(_CARS, _CARS_W), spread=0.08)
        self.add(9, _Car(self.box(gu, gv, length, width, angle), colour, self.world))

    def wing(self, box: _Box, z: float, roof: str, colour: np.ndarray, mat: int, pitch: float) -> None:
        if box.hw > box.hl:  # the ridge runs along the longer side
            box = _Box(box.cx, box.cy, box.hw, box.hl, math.atan2(box.sa, box.ca) + math.pi / 2)
        self.add(7, _Wing(box, z, roof, colour, mat, pitch, self.world))

    def lawn(self, rng: _Rng, box: _Box, layer: int = 0) -> None:
        dry = rng.u(0.0, 0.9)
        lush = rng.colour(_LAWN, spread=0.1)
        drycol = rng.colour(_LAWN_DRY, spread=0.08)
        self.add(
            layer,
            _Flat(box, _LOW, _M_GRASS, lush, colour2=lush + (drycol - lush) * np.float32(dry)),
        )

    def container(self, rng: _Rng, gu: float, gv: float, angle: float) -> None:
        box = self.box(gu, gv, rng.u(3.0, 6.5), rng.u(2.0, 2.6), angle)
        colour = rng.colour(rng.pick(_CONTAINERS), spread=0.1)
        self.add(5, _Prism(box, rng.u(1.2, 2.6), _CLU, _M_METAL, colour, self.world))

    def debris(self, rng: _Rng, gu: float, gv: float, size: float) -> None:
        box = self.box(gu, gv, size * rng.u(0.8, 1.4), size * rng.u(0.6, 1.0), rng.u(0, math.pi))
        base = rng.colour(rng.pick((*_SOIL[:2], _METAL)), spread=0.15)
        self.add(5, _Blob(box, _CLU, _M_DEBRIS, base, 0.9, colourful=True))

    def soil(self, rng: _Rng, box: _Box, layer: int = 1, rough: float = 0.7) -> None:
        colour = rng.colour(rng.pick(_SOIL, (0.5, 0.35, 0.15)), spread=0.1)
        self.add(layer, _Blob(box, _CLU, _M_SOIL, colour, rough))

    def roof(self, rng: _Rng, pitched: bool) -> tuple[str, np.ndarray, int, float]:
        if pitched:
            base = rng.pick(_ROOF_PITCHED, _ROOF_PITCHED_W)
            kind = "gable" if rng.chance(0.6) else "hip"
            return kind, rng.colour(base, spread=0.12), _M_TILE, math.radians(rng.u(28, 45))
        idx = rng.pick(range(len(_ROOF_FLAT)), _ROOF_FLAT_W)
        mat = _M_GRAVEL if idx == 3 else _M_GRASS if idx == 5 else _M_FLAT
        return "flat", rng.colour(_ROOF_FLAT[idx], spread=0.12), mat, 0.0

    def roof_units(self, rng: _Rng, box: _Box, z: float, n: int) -> None:
        """HVAC boxes and skylights on a flat roof (label building)."""
        for _ in range(n):
            size_u, size_v = rng.u(1.0, 3.5), rng.u(1.0, 2.5)
            if size_u > 2 * box.hl - 2 or size_v > 2 * box.hw - 2:
                continue
            ou = rng.u(-1, 1) * (box.hl - size_u / 2 - 1)
            ov = rng.u(-1, 1) * (box.hw - size_v / 2 - 1)
            cx = box.cx + ou * box.ca - ov * box.sa
            cy = box.cy + ou * box.sa + ov * box.ca
            glass = rng.chance(0.3)
            unit = _Box(cx, cy, size_u / 2, size_v / 2, math.atan2(box.sa, box.ca))
            colour = rng.colour(_GLASS if glass else _METAL, spread=0.1)
            self.add(
                8,
                _Prism(
                    unit,
                    z + (0.05 if glass else rng.u(0.6, 1.6)),
                    _BLD,
                    _M_METAL,
                    colour,
                    self.world,
                ),
            )


@dataclass(frozen=True)
class _Interior:
    u0: float
    u1: float
    v0: float
    v1: float
    roads: tuple[bool, ...]  # street on the u0, u1, v0, v1 side


def _interior(seed: int, i: int, j: int) -> _Interior:
    u0, u1 = _line(seed, 0, i).pos, _line(seed, 0, i + 1).pos
    v0, v1 = _line(seed, 1, j).pos, _line(seed, 1, j + 1).pos
    insets = (
        _inset(seed, 0, i, j),
        _inset(seed, 0, i + 1, j),
        _inset(seed, 1, j, i),
        _inset(seed, 1, j + 1, i),
    )
    return _Interior(u0 + insets[0], u1 - insets[1], v0 + insets[2], v1 - insets[3], tuple(x > 0 for x in insets))


def _street(b: _Builder, seed: int, axis: int, line: int, seg: int) -> None:
    """The street segment on grid line ``line`` along cell ``seg`` (owned by the cell)."""
    if not _has_segment(seed, axis, line, seg):
        return
    ln = _line(seed, axis, line)
    cross = 1 - axis
    p0, p1 = _line(seed, cross, seg).pos, _line(seed, cross, seg + 1).pos

    def crossing(node: int) -> float:
        # How far the crossing street at ``node`` reaches: extend into the junction.
        if _has_segment(seed, cross, node, line - 1) or _has_segment(seed, cross, node, line):
            return _line(seed, cross, node).half + _line(seed, cross, node).sidewalk
        return 0.0

    e0, e1 = crossing(seg), crossing(seg + 1)
    a0, a1 = p0 - e0, p1 + e1

    def geo(al: float, off: float) -> tuple[float, float]:
        return (ln.pos + off, al) if axis == 0 else (al, ln.pos + off)

    angle = math.pi / 2 if axis == 0 else 0.0

    def seg_box(al0: float, al1: float, off: float, width: float) -> _Box:
        gu, gv = geo((al0 + al1) / 2, off)
        return b.box(gu, gv, al1 - al0, width, angle)

    rng = _Rng(seed, 0x57EE7, axis, line, seg)
    if ln.sidewalk > 0:
        paving = _PAVING[_key32(seed, axis, line) % 2]
        for side in (-1, 1):
            off = side * (ln.half + ln.sidewalk / 2)
            b.add(
                2,
                _Flat(seg_box(a0, a1, off, ln.sidewalk), _IMP, _M_PAVING, rng.colour(paving, 0.05)),
            )
    asphalt = rng.colour(ln.asphalt, spread=0.05, tint=0.01)
    b.add(3, _Flat(seg_box(a0, a1, 0.0, 2 * ln.half), _IMP, _M_ASPHALT, asphalt))
    for _ in range(rng.integer(0, 2)):  # repaired patches
        length = rng.u(3, 12)
        at = rng.u(p0 + e0, max(p0 + e0, p1 - e1 - length))
        patch = rng.colour(rng.pick(_ASPHALT), spread=0.06)
        off = rng.u(-0.5, 0.5) * ln.half
        b.add(3, _Flat(seg_box(at, at + length, off, rng.u(1.0, ln.half)), _IMP, _M_ASPHALT, patch))
    m0, m1 = p0 + e0 + 1.0, p1 - e1 - 1.0
    if m1 - m0 > 4:
        mark = rng.colour(_MARKING, spread=0.05)
        if ln.main:
            b.add(
                4,
                _Flat(
                    seg_box(m0, m1, 0.0, 0.15),
                    _IMP,
                    _M_MARKING,
                    mark,
                    stripes=(6.0, 0.5, True, 0.0),
                ),
            )
            for side in (-1, 1):
                b.add(4, _Flat(seg_box(m0, m1, side * (ln.half - 0.45), 0.12), _IMP, _M_MARKING, mark))
        if e0 > 0 and rng.chance(0.35):  # zebra crossing by the junction
            b.add(
                4,
                _Flat(
                    seg_box(m0, m0 + 3.0, 0.0, 2 * ln.half - 0.8),
                    _IMP,
                    _M_MARKING,
                    mark,
                    stripes=(1.0, 0.5, False, 0.0),
                ),
            )
    # Cars parked along the kerbs and driving in the lanes.
    for side in (-1, 1):
        if ln.parking <= 0:
            break
        pos = m0 + 3.0
        while pos < m1 - 5.0:
            length = rng.u(4.6, 6.5)
            if rng.chance(ln.parking):
                gu, gv = geo(pos + length / 2, side * (ln.half - 1.15))
                b.car(rng, (gu, gv, 0.0), angle)
            pos += length
    lanes = (-0.5, 0.5) if not ln.main else (-0.62, -0.25, 0.25, 0.62)
    for lane in lanes:
        if rng.chance(0.35):
            at = rng.u(m0 + 3, max(m0 + 3, m1 - 3))
            gu, gv = geo(at, lane * ln.half * (0.55 if ln.parking else 1.0))
            b.car(rng, (gu, gv, 0.0), angle)
    if ln.avenue:
        pos = m0 + rng.u(2, 8)
        while pos < m1 - 2:
            for side in (-1, 1):
                if rng.chance(0.85):
                    off = side * (ln.half + ln.sidewalk * 0.5 + rng.u(-0.3, 0.3))
                    gu, gv = geo(pos, off)
                    b.tree(rng, gu, gv, r=rng.u(2.5, 5.0))
            pos += rng.u(8, 14)


def _row_frames(it: _Interior, depth_rows: int) -> tuple[list[_Frame], float, float, float]:
    """Frames for one or two rows of lots facing the interior's long sides."""
    lu, lv = it.u1 - it.u0, it.v1 - it.v0
    if lu >= lv:
        frames = [
            _Frame((0.0, it.v0), (1.0, 0.0), (0.0, 1.0)),
            _Frame((0.0, it.v1), (1.0, 0.0), (0.0, -1.0)),
        ]
        return frames[:depth_rows], it.u0, it.u1, lv / depth_rows
    frames = [
        _Frame((it.u0, 0.0), (0.0, 1.0), (1.0, 0.0)),
        _Frame((it.u1, 0.0), (0.0, 1.0), (-1.0, 0.0)),
    ]
    return frames[:depth_rows], it.v0, it.v1, lu / depth_rows


def _gen_residential(b: _Builder, rng: _Rng, it: _Interior) -> None:
    b.lawn(rng, b.rect(it.u0, it.u1, it.v0, it.v1))
    short = min(it.u1 - it.u0, it.v1 - it.v0)
    if short < 14:
        _scatter_trees(b, rng, it, rng.integer(1, 4))
        return
    frames, a0, a1, depth = _row_frames(it, 2 if short >= 38 else 1)
    for fr in frames:
        n = max(1, round((a1 - a0) / rng.u(15, 24)))
        inner = [a0 + (a1 - a0) * (k + rng.u(-0.15, 0.15)) / n for k in range(1, n)]
        for al0, al1 in pairwise([a0, *inner, a1]):
            _house_lot(b, rng, fr, al0, al1, depth)


def _house_lot(b: _Builder, rng: _Rng, fr: _Frame, al0: float, al1: float, depth: float) -> None:
    lw = al1 - al0
    width = min(lw - 3.0, rng.u(9, 16))
    deep = min(depth - 7.0, rng.u(8, 13.5))
    house = width >= 6 and deep >= 6
    if house:
        setback = rng.u(2.5, max(2.5, min(7.0, depth - deep - 2.0)))
        ac = setback + deep / 2
        al = (al0 + al1) / 2 + rng.u(-1, 1) * max(0.0, (lw - width) / 2 - 1.5)
        rot = 0.0
        if rng.chance(0.2):
            rot = rng.u(-0.45, 0.45)
            width, deep = width * 0.85, deep * 0.85
        roof, colour, mat, pitch = b.roof(rng, pitched=rng.chance(0.75))
        z = rng.u(5, 10)
        b.wing(b.fbox(fr, al, ac, width, deep, rot), z, roof, colour, mat, pitch)
        back = depth - setback - deep
        if rng.chance(0.3) and back > 5:
            w2 = rng.u(0.35, 0.55) * width
            d2 = rng.u(4.0, min(9.0, back - 1.5))
            oal = rng.pick((-1, 1)) * (width - w2) / 2
            oac = deep / 2 + d2 / 2 - 0.5
            c, s = math.cos(rot), math.sin(rot)
            b.wing(
                b.fbox(fr, al + c * oal - s * oac, ac + s * oal + c * oac, w2, d2 + 1.0, rot),
                z * rng.u(0.85, 1.0),
                roof,
                colour,
                mat,
                pitch,
            )
        if roof != "flat" and rng.chance(0.3):
            for _ in range(rng.integer(1, 3)):
                sk = b.fbox(
                    fr,
                    al + rng.u(-0.3, 0.3) * width,
                    ac + rng.pick((-1, 1)) * deep * 0.22,
                    rng.u(0.8, 1.4),
                    rng.u(1.0, 1.6),
                    rot,
                )
                b.add(8, _Prism(sk, z + 0.05, _BLD, _M_METAL, rng.colour(_GLASS), b.world))
        elif roof == "flat":
            b.roof_units(rng, b.fbox(fr, al, ac, width, deep, rot), z, rng.integer(0, 3))
        # Driveway beside the house (or to its front), maybe with a car.
        gap_l, gap_r = al - width / 2 - al0, al1 - al - width / 2
        paving = rng.colour(rng.pick(_PAVING + _ASPHALT[:1]), spread=0.08)
        if max(gap_l, gap_r) >= 3.8:
            dal = al0 + gap_l / 2 if gap_l > gap_r else al1 - gap_r / 2
            dlen = setback + deep * 0.7
            b.add(3, _Flat(b.fbox(fr, dal, dlen / 2, 3.0, dlen), _IMP, _M_PAVING, paving))
            if rng.chance(0.55) and dlen > 5.5:
                gu, gv = fr.point(dal, rng.u(2.8, dlen - 2.6))
                b.car(rng, (gu, gv, 0.0), fr.angle(math.pi / 2))
        elif setback >= 3:
            b.add(3, _Flat(b.fbox(fr, al, setback / 2, 3.0, setback + 0.5), _IMP, _M_PAVING, paving))
        if rng.chance(0.4) and back > 3.5:
            b.add(
                3,
                _Flat(
                    b.fbox(fr, al, ac + deep / 2 + 1.5, width * rng.u(0.4, 0.8), 3.0, rot),
                    _IMP,
                    _M_PAVING,
                    rng.colour(rng.pick(_PAVING)),
                ),
            )
    else:
        setback, deep, al, width = 0.0, 0.0, (al0 + al1) / 2, 0.0
    # Garden: trees, vegetable bed, pool, odds and ends, hedges.
    for _ in range(rng.pick((0, 1, 2, 3, 4), (0.1, 0.2, 0.3, 0.25, 0.15))):
        r = rng.u(1.8, 5.0)
        for _attempt in range(6):
            tal, tac = rng.u(al0 + 1, al1 - 1), rng.u(1.0, depth - 1.0)
            if not house or abs(tal - al) > width / 2 + 0.4 * r or abs(tac - setback - deep / 2) > deep / 2 + 0.4 * r:
                gu, gv = fr.point(tal, tac)
                b.tree(rng, gu, gv, r)
                break
    back_ac = (setback + deep + depth) / 2
    room = depth - setback - deep
    if rng.chance(0.35) and room > 5:
        bed = b.fbox(
            fr,
            rng.u(al0 + 3, al1 - 3),
            back_ac,
            rng.u(3, min(9, lw - 2)),
            min(room - 2, rng.u(2.5, 6)),
        )
        b.add(
            1,
            _Flat(bed, _CLU, _M_SOIL, rng.colour(rng.pick(_SOIL[:2])), stripes=(0.7, 0.5, True, 0.12)),
        )
    if rng.chance(0.08) and room > 7:
        pool = b.fbox(fr, rng.u(al0 + 4, al1 - 4), back_ac, rng.u(5, 9), rng.u(3, 4.5))
        b.add(5, _Flat(pool, _CLU, _M_WATER, rng.colour(_POOL, 0.08)))
    if rng.chance(0.35):
        gu, gv = fr.point(rng.u(al0 + 1.5, al1 - 1.5), rng.u(depth * 0.6, depth - 1.5))
        b.debris(rng, gu, gv, rng.u(1.0, 3.0))
    if not house and rng.chance(0.5):
        gu, gv = fr.point((al0 + al1) / 2, depth / 2)
        b.soil(rng, b.box(gu, gv, lw * 0.7, depth * 0.6, fr.angle(0)))
    for along in (False, True):
        if rng.chance(0.35 if not along else 0.2):
            if along:
                edge_al = al0 + 0.6 if rng.chance(0.5) else al1 - 0.6
                hb = b.fbox(fr, edge_al, depth / 2 + 1.0, rng.u(0.9, 1.5), depth - 2.0)
            else:
                hb = b.fbox(fr, (al0 + al1) / 2, depth - 0.7, lw - 0.4, rng.u(0.9, 1.5))
            b.add(6, _Prism(hb, rng.u(1.2, 2.2), _LOW, _M_HEDGE, rng.colour(_HEDGE, 0.12), b.world))


def _scatter_trees(b: _Builder, rng: _Rng, it: _Interior, n: int, cluster: float | None = None) -> None:
    margin = 2.0
    if it.u1 - it.u0 < 2 * margin + 1 or it.v1 - it.v0 < 2 * margin + 1:
        return
    cu, cv = rng.u(it.u0 + margin, it.u1 - margin), rng.u(it.v0 + margin, it.v1 - margin)
    for _ in range(n):
        if cluster is None:
            gu, gv = rng.u(it.u0 + margin, it.u1 - margin), rng.u(it.v0 + margin, it.v1 - margin)
        else:
            gu = min(
                max(cu + cluster * (rng.u() + rng.u() + rng.u() - 1.5), it.u0 + margin),
                it.u1 - margin,
            )
            gv = min(
                max(cv + cluster * (rng.u() + rng.u() + rng.u() - 1.5), it.v0 + margin),
                it.v1 - margin,
            )
        b.tree(rng, gu, gv)


def _parking(b: _Builder, rng: _Rng, u0: float, u1: float, v0: float, v1: float) -> None:
    """Stall rows along the longer side of a paved rectangle, with cars."""
    along_u = (u1 - u0) >= (v1 - v0)
    a0, a1, c0, c1 = (u0, u1, v0, v1) if along_u else (v0, v1, u0, u1)
    occupancy = rng.u(0.35, 0.9)
    mark = rng.colour(_MARKING, spread=0.08)

    def pt(al: float, ac: float) -> tuple[float, float]:
        return (al, ac) if along_u else (ac, al)

    row_angle = 0.0 if along_u else math.pi / 2
    car_angle = row_angle + math.pi / 2
    pos = c0 + 0.5
    rows = []
    while True:  # double rows: stalls, aisle, stalls
        if pos + 5.0 > c1:
            break
        rows.append(pos)
        if pos + 5.0 + 6.5 + 5.0 <= c1:
            rows.append(pos + 11.5)
        pos += 17.0
    for r in rows:
        n = int((a1 - a0 - 1.0) // 2.6)
        start = (a0 + a1) / 2 - n * 1.3
        for k in range(n + 1):
            gu, gv = pt(start + k * 2.6, r + 2.5)
            b.add(4, _Flat(b.box(gu, gv, 5.0, 0.12, car_angle), _IMP, _M_MARKING, mark))
        for k in range(n):
            if rng.chance(occupancy):
                gu, gv = pt(start + (k + 0.5) * 2.6 + rng.u(-0.2, 0.2), r + 2.5 + rng.u(-0.3, 0.3))
                b.car(rng, (gu, gv, 0.0), car_angle + rng.u(-0.05, 0.05))


def _gen_urban(b: _Builder, rng: _Rng, it: _Interior) -> None:
    lu, lv = it.u1 - it.u0, it.v1 - it.v0
    full = b.rect(it.u0, it.u1, it.v0, it.v1)
    if rng.chance(0.55):
        b.add(0, _Flat(full, _IMP, _M_PAVING, rng.colour(rng.pick(_PAVING + _ASPHALT[:2]))))
    else:
        b.lawn(rng, full)
    dd = rng.u(10, 15)
    if min(lu, lv) < 2 * dd + 8:
        dd = (min(lu, lv) - 8) / 2
    if dd < 7:
        _gen_commercial(b, rng, it)
        return
    strips = [
        (it.u0, it.u1, it.v0, it.v0 + dd, True),
        (it.u0, it.u1, it.v1 - dd, it.v1, True),
        (it.u0, it.u0 + dd, it.v0 + dd, it.v1 - dd, False),
        (it.u1 - dd, it.u1, it.v0 + dd, it.v1 - dd, False),
    ]
    for u0, u1, v0, v1, along_u in strips:
        if rng.chance(0.12):
            continue
        a0, a1 = (u0, u1) if along_u else (v0, v1)
        n = max(1, rng.integer(1, max(1, round((a1 - a0) / 14))))
        cuts = sorted(rng.u(a0, a1) for _ in range(n - 1))
        for s0, s1 in pairwise([a0, *cuts, a1]):
            if s1 - s0 < 6 or rng.chance(0.12):
                continue
            roof, colour, mat, pitch = b.roof(rng, pitched=rng.chance(0.45))
            z = rng.u(9, _MAX_HEIGHT)
            box = b.rect(s0, s1, v0, v1) if along_u else b.rect(u0, u1, s0, s1)
            b.wing(box, z, roof, colour, mat, pitch)
            if roof == "flat":
                b.roof_units(rng, box, z, rng.integer(0, 4))
    inner = _Interior(it.u0 + dd, it.u1 - dd, it.v0 + dd, it.v1 - dd, (False,) * 4)
    _scatter_trees(b, rng, inner, rng.integer(0, 5))
    iu, iv = inner.u1 - inner.u0, inner.v1 - inner.v0
    if iu > 8 and iv > 8:
        for k in range(rng.integer(0, 5)):
            if inner.u0 + 2 + k * 2.6 < inner.u1 - 2:
                b.car(rng, (inner.u0 + 2.5 + k * 2.6, inner.v0 + 3.0, 0.0), math.pi / 2)
        for _ in range(rng.integer(0, 2)):
            b.container(rng, rng.u(inner.u0 + 3, inner.u1 - 3), rng.u(inner.v0 + 3, inner.v1 - 3), 0.0)
        if rng.chance(0.5):
            b.debris(
                rng,
                rng.u(inner.u0 + 2, inner.u1 - 2),
                rng.u(inner.v0 + 2, inner.v1 - 2),
                rng.u(1, 3),
            )


def _gen_commercial(b: _Builder, rng: _Rng, it: _Interior, building: bool = True) -> None:
    lu, lv = it.u1 - it.u0, it.v1 - it.v0
    b.lawn(rng, b.rect(it.u0, it.u1, it.v0, it.v1))
    border = rng.u(1.5, 3.5)
    u0, u1, v0, v1 = it.u0 + border, it.u1 - border, it.v0 + border, it.v1 - border
    if u1 - u0 < 8 or v1 - v0 < 8:
        return
    b.add(1, _Flat(b.rect(u0, u1, v0, v1), _IMP, _M_ASPHALT, rng.colour(rng.pick(_ASPHALT), 0.08)))
    along_u = lu >= lv
    a0, a1, c0, c1 = (u0, u1, v0, v1) if along_u else (v0, v1, u0, u1)
    split = a0
    if building:
        frac = rng.u(0.4, 0.62)
        split = a0 + (a1 - a0) * frac
        bl0 = a0 + rng.u(0, 3)
        depth = min(c1 - c0 - 2 * rng.u(1.0, 6.0), 40.0)
        mid = (c0 + c1) / 2
        if split - bl0 >= 10 and depth >= 10:
            roof, colour, mat, pitch = b.roof(rng, pitched=rng.chance(0.12))
            z = rng.u(6, 13)
            box = (
                b.rect(bl0, split, mid - depth / 2, mid + depth / 2)
                if along_u
                else b.rect(mid - depth / 2, mid + depth / 2, bl0, split)
            )
            b.wing(box, z, roof, colour, mat, pitch)
            if roof == "flat":
                b.roof_units(rng, box, z, rng.integer(2, 9))
            for _ in range(rng.integer(0, 3)):
                at = rng.u(bl0, split)
                side = c0 + 1.5 if rng.chance(0.5) else c1 - 1.5
                gu, gv = (at, side) if along_u else (side, at)
                b.container(rng, gu, gv, 0.0 if along_u else math.pi / 2)
        split += 1.5
    if a1 - split > 6:
        pu0, pu1, pv0, pv1 = (split, a1, c0, c1) if along_u else (c0, c1, split, a1)
        _parking(b, rng, pu0, pu1, pv0, pv1)
    for _ in range(rng.integer(2, 8)):  # trees in the lawn border
        if rng.chance(0.5):
            gu, gv = (
                rng.u(it.u0, it.u1),
                (it.v0 + border / 2 if rng.chance(0.5) else it.v1 - border / 2),
            )
        else:
            gu, gv = (
                (it.u0 + border / 2 if rng.chance(0.5) else it.u1 - border / 2),
                rng.u(it.v0, it.v1),
            )
        b.tree(rng, gu, gv, rng.u(2.0, 4.5))
    if rng.chance(0.5):
        b.debris(rng, rng.u(u0 + 2, u1 - 2), rng.u(v0 + 2, v1 - 2), rng.u(1.5, 4.0))


def _gen_park(b: _Builder, rng: _Rng, it: _Interior) -> None:
    b.lawn(rng, b.rect(it.u0, it.u1, it.v0, it.v1))
    path = rng.colour(rng.pick((_GRAVEL_PATH, _PAVING[0], _PAVING[1])), spread=0.08)
    mat = _M_GRAVEL if path[2] < path[0] - 0.05 else _M_PAVING
    for _ in range(rng.integer(1, 2)):
        w = rng.u(2.0, 3.5)
        if rng.chance(0.5):
            gv = rng.u(it.v0 + 4, it.v1 - 4)
            b.add(3, _Flat(b.rect(it.u0, it.u1, gv - w / 2, gv + w / 2), _IMP, mat, path))
        else:
            gu = rng.u(it.u0 + 4, it.u1 - 4)
            b.add(3, _Flat(b.rect(gu - w / 2, gu + w / 2, it.v0, it.v1), _IMP, mat, path))
    for _ in range(rng.integer(2, 4)):
        _scatter_trees(b, rng, it, rng.integer(4, 10), cluster=rng.u(6, 14))
    lu, lv = it.u1 - it.u0, it.v1 - it.v0
    if rng.chance(0.3) and min(lu, lv) > 24:
        r = rng.u(5, min(12, min(lu, lv) / 2 - 4))
        gu, gv = rng.u(it.u0 + r + 2, it.u1 - r - 2), rng.u(it.v0 + r + 2, it.v1 - r - 2)
        b.add(
            5,
            _Blob(
                b.box(gu, gv, 2 * r * rng.u(1.0, 1.6), 2 * r, rng.u(0, math.pi)),
                _CLU,
                _M_WATER,
                rng.colour(_WATER, 0.1),
                0.4,
            ),
        )
    if rng.chance(0.45) and min(lu, lv) > 14:
        r = rng.u(3, 6)
        gu, gv = rng.u(it.u0 + r + 1, it.u1 - r - 1), rng.u(it.v0 + r + 1, it.v1 - r - 1)
        b.add(
            5,
            _Blob(
                b.box(gu, gv, 2 * r, 2 * r * rng.u(0.7, 1.0)),
                _CLU,
                _M_SOIL,
                rng.colour(_SOIL[2], 0.08),
                0.5,
            ),
        )


def _gen_field(b: _Builder, rng: _Rng, it: _Interior) -> None:
    full = b.rect(it.u0, it.u1, it.v0, it.v1)
    green = rng.colour(rng.pick((_FIELD_GREEN, _FIELD_YELLOW, _LAWN_DRY)), spread=0.1)
    b.add(0, _Flat(full, _LOW, _M_FIELD, green, stripes=(rng.u(0.8, 3.0), 0.5, rng.chance(0.5), 0.06)))
    lu, lv = it.u1 - it.u0, it.v1 - it.v0
    if rng.chance(0.75):  # bare soil / construction site
        fu, fv = rng.u(0.3, 0.8) * lu, rng.u(0.3, 0.8) * lv
        gu, gv = rng.u(it.u0 + fu / 2, it.u1 - fu / 2), rng.u(it.v0 + fv / 2, it.v1 - fv / 2)
        b.soil(rng, b.box(gu, gv, fu, fv), rough=0.35)
        if rng.chance(0.6):
            for _ in range(rng.integer(1, 4)):
                b.debris(rng, gu + rng.u(-0.4, 0.4) * fu, gv + rng.u(-0.4, 0.4) * fv, rng.u(1.5, 4))
            for _ in range(rng.integer(0, 3)):
                b.container(rng, gu + rng.u(-0.4, 0.4) * fu, gv + rng.u(-0.4, 0.4) * fv, rng.u(0, math.pi))
    if rng.chance(0.6):
        _scatter_trees(b, rng, it, rng.integer(2, 7), cluster=rng.u(4, 10))


def _gen_parking(b: _Builder, rng: _Rng, it: _Interior) -> None:
    _gen_commercial(b, rng, it, building=False)


_CELL_TYPES = (_gen_residential, _gen_urban, _gen_commercial, _gen_park, _gen_field, _gen_parking)
_CELL_WEIGHTS = (0.38, 0.2, 0.14, 0.13, 0.08, 0.07)


@lru_cache(maxsize=2048)
def _cell_objects(seed: int, i: int, j: int) -> tuple[_Obj, ...]:
    """Everything cell ``(i, j)`` owns: its content and its left and top streets."""
    world = _world(seed)
    b = _Builder(world, i, j)
    rng = _Rng(seed, 0xCE11, i, j)
    it = _interior(seed, i, j)
    if it.u1 - it.u0 > 4 and it.v1 - it.v0 > 4:
        rng.pick(_CELL_TYPES, _CELL_WEIGHTS)(b, rng, it)
    _street(b, seed, 0, i, j)
    _street(b, seed, 1, j, i)
    return tuple(b.items)


def _gather(world: _World, bounds: tuple[float, float, float, float]) -> list[_Obj]:
    """Objects of all cells that can reach ``bounds`` (image metres), in paint order."""
    xmin, xmax, ymin, ymax = bounds
    corners = [world.to_grid(x, y) for x in (xmin, xmax) for y in (ymin, ymax)]
    pad = _REACH + _JITTER / 2
    gu0 = min(c[0] for c in corners) - pad
    gu1 = max(c[0] for c in corners) + pad
    gv0 = min(c[1] for c in corners) - pad
    gv1 = max(c[1] for c in corners) + pad
    objs = []
    for j in range(math.floor(gv0 / _CELL) - 1, math.floor(gv1 / _CELL) + 1):
        for i in range(math.floor(gu0 / _CELL) - 1, math.floor(gu1 / _CELL) + 1):
            for obj in _cell_objects(world.seed, i, j):
                if _overlaps(obj.bb, bounds) or (obj.casts and _overlaps(obj.sb, bounds)):
                    objs.append(obj)
    objs.sort(key=lambda o: o.key)
    return objs


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------
def _valid_mask(spec: SceneSpec, r0: int, c0: int, h: int, w: int) -> np.ndarray:
    """Pixels inside the scene's irregular valid footprint (global geometry).

    Collar widths are in pixels, measured to pixel centres, so a collar
    narrower than half a pixel (tiny scenes) leaves every pixel valid.
    """
    rng = _Rng(spec.seed, 0xC011A4)
    rows = np.arange(r0, r0 + h, dtype=np.float64) + 0.5
    cols = np.arange(c0, c0 + w, dtype=np.float64) + 0.5
    big_h, big_w = float(spec.height), float(spec.width)

    def collar(t: np.ndarray, length: float, across: float, k: int) -> np.ndarray:
        base, amp = rng.u(0.004, 0.035), rng.u(0.005, 0.04)
        return across * (base + amp * _noise1d(t, length / rng.u(3, 8), _key32(spec.seed, 0xC0, k)))

    top = collar(cols, big_w, big_h, 0)
    bottom = collar(cols, big_w, big_h, 1)
    left = collar(rows, big_h, big_w, 2)
    right = collar(rows, big_h, big_w, 3)
    valid = (rows[:, None] >= top[None, :]) & ((big_h - rows)[:, None] >= bottom[None, :])
    valid &= (cols[None, :] >= left[:, None]) & ((big_w - cols)[None, :] >= right[:, None])
    if rng.chance(0.7):  # a cut corner, as in orthophotos of a rotated footprint
        cut = rng.u(0.05, 0.2) * min(big_h, big_w)
        corner = rng.integer(0, 3)
        rr = rows if corner < 2 else big_h - rows
        cc = cols if corner % 2 == 0 else big_w - cols
        valid &= (rr[:, None] + cc[None, :]) >= cut
    return valid


def _pixel_noise(seed: int, r0: int, c0: int, h: int, w: int, nch: int) -> np.ndarray:
    """Sensor noise hashed from global pixel indices: shared luminance + per band."""
    key = _key32(seed, 0x9015E)
    rows = np.arange(r0, r0 + h, dtype=np.int64)
    cols = np.arange(c0, c0 + w, dtype=np.int64)
    h1 = _hash2d(rows, cols, key)
    lum = ((h1 & 0xFFFF).astype(np.float32) + (h1 >> 16).astype(np.float32)) * np.float32(1 / 65536.0) - 1
    lum *= np.float32(0.028)
    h2 = _fmix(h1 ^ np.uint32(0x5BD1E995))
    out = np.empty((nch, h, w), dtype=np.float32)
    for k in range(nch):
        bits = ((h2 >> (8 * k)) & 0xFF).astype(np.float32)
        out[k] = lum + (bits * np.float32(1 / 256.0) - np.float32(0.5)) * np.float32(0.03)
    return out


def _compose(cv: _Canvas, shadow: np.ndarray) -> np.ndarray:
    """Colour x shading x texture x illumination, shadows, in float32."""
    fine, medium, coarse, leaf, leaf2 = cv.noise
    half = np.float32(0.5)
    # Two leaf lattices at incommensurate spacings hide the grid of value noise.
    leaf = leaf * np.float32(0.6) + leaf2 * np.float32(0.4) - half
    light = np.float32(1) + _TEXTURE_COLUMNS[3][cv.mat] * leaf
    for amp, field in zip(_TEXTURE_COLUMNS[:3], (fine, medium, coarse), strict=True):
        light += amp[cv.mat] * (field - half)
    illum = _value_noise(cv.ys, cv.xs, _ILLUM_SCALE, _key32(cv.world.seed, 0x111))
    light *= cv.shade
    light *= np.float32(0.92) + np.float32(0.16) * illum
    out = cv.col * light[None]
    for k in range(cv.nch):
        np.multiply(out[k], _SHADOW[k], out=out[k], where=shadow)
    return out


def _blur(img: np.ndarray) -> np.ndarray:
    """Light optical blur (0.2, 0.6, 0.2) that consumes the one-pixel halo."""
    a, b = np.float32(0.2), np.float32(0.6)
    rows = img[:, :-2] * a + img[:, 1:-1] * b + img[:, 2:] * a
    return rows[:, :, :-2] * a + rows[:, :, 1:-1] * b + rows[:, :, 2:] * a


def _render_block(spec: SceneSpec, r0: int, c0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    world = _world(spec.seed & _MASK64)
    cv = _Canvas(spec, world, r0 - 1, c0 - 1, h + 2, w + 2)
    objs = _gather(world, cv.bounds)
    for obj in objs:
        obj.paint(cv)
    shadow = np.zeros((cv.h, cv.w), dtype=bool)
    for obj in objs:
        if obj.casts:
            obj.cast(cv, shadow)
    img = _blur(_compose(cv, shadow))
    img += _pixel_noise(world.seed, r0, c0, h, w, cv.nch)
    label = cv.label[1:-1, 1:-1].copy()
    info = np.iinfo(spec.dtype)
    scaled = img[list(_BAND_ORDER[spec.bands])] * np.float32(_DTYPE_SCALE[spec.dtype]) + np.float32(0.5)
    out = np.clip(scaled, 0, info.max).astype(spec.dtype)
    if spec.nodata is not None:
        valid = _valid_mask(spec, r0, c0, h, w)
        nodata = spec.nodata
        # A valid pixel must not look like nodata in every band.
        clash = valid & np.all(out == nodata, axis=0)
        out[0][clash] = nodata + 1 if nodata < info.max else nodata - 1
        out[:, ~valid] = nodata
        label[~valid] = NODATA
    return out, label


def render_window(
    spec: SceneSpec, row_off: int, col_off: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Render one window of a synthetic scene.

    Parameters
    ----------
    spec : SceneSpec
        The scene.
    row_off, col_off : int
        Upper-left pixel of the window in scene coordinates.
    height, width : int
        Window size in pixels; the window must lie inside the scene.

    Returns
    -------
    image : numpy.ndarray
        ``(spec.count, height, width)`` array of ``spec.dtype``, bands in the
        order given by ``spec.bands``.
    label : numpy.ndarray
        ``(height, width)`` uint8 ISPRS class ids (:data:`CLASS_NAMES`), 255
        where the image is nodata.

    Raises
    ------
    geoseg.errors.ConfigError
        If the window is empty or reaches outside the scene (a ``ValueError``).

    Notes
    -----
    The result does not depend on how a scene is cut into windows: any
    window equals the same region cut from any larger window, byte for byte.
    Large windows are rendered in chunks of at most 512 x 512 pixels, so
    the working memory is about 30 MB (4-band: 35 MB) on top of the returned
    arrays, whatever the window size.

    Examples
    --------
    >>> spec = SceneSpec(width=256, height=256, seed=1)
    >>> image, label = render_window(spec, 0, 0, 64, 64)
    >>> image.shape, image.dtype.name, label.shape
    ((3, 64, 64), 'uint8', (64, 64))
    >>> bool((render_window(spec, 16, 16, 8, 8)[0] == image[:, 16:24, 16:24]).all())
    True
    """
    for name, value in (
        ("row_off", row_off),
        ("col_off", col_off),
        ("height", height),
        ("width", width),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    if height < 1 or width < 1:
        raise ConfigError(f"window must be at least 1 x 1 pixels, got height={height}, width={width}")
    if row_off < 0 or col_off < 0 or row_off + height > spec.height or col_off + width > spec.width:
        raise ConfigError(
            f"window rows {row_off}..{row_off + height}, cols {col_off}..{col_off + width} reach "
            f"outside the {spec.height} x {spec.width} scene; clip the window to the scene"
        )
    row_off, col_off, height, width = int(row_off), int(col_off), int(height), int(width)
    if height <= _CHUNK and width <= _CHUNK:
        return _render_block(spec, row_off, col_off, height, width)
    image = np.empty((spec.count, height, width), dtype=spec.dtype)
    label = np.empty((height, width), dtype=np.uint8)
    for r in range(0, height, _CHUNK):
        for c in range(0, width, _CHUNK):
            hh, ww = min(_CHUNK, height - r), min(_CHUNK, width - c)
            image[:, r : r + hh, c : c + ww], label[r : r + hh, c : c + ww] = _render_block(
                spec, row_off + r, col_off + c, hh, ww
            )
    return image, label


# ---------------------------------------------------------------------------
# Writing GeoTIFFs
# ---------------------------------------------------------------------------
def write_scene(
    spec: SceneSpec,
    image_path: str | os.PathLike[str],
    label_path: str | os.PathLike[str] | None = None,
    *,
    block: int = 1024,
    compress: str = "deflate",
) -> None:
    """Render a scene into tiled GeoTIFFs, window by window.

    Parameters
    ----------
    spec : SceneSpec
        The scene to render.
    image_path : str or os.PathLike
        Output image GeoTIFF: ``spec.count`` bands of ``spec.dtype`` with the
        spec's CRS and transform, ``nodata=spec.nodata`` when set, and band
        descriptions (``red``, ``green``, ``blue``, ``nir``).
    label_path : str or os.PathLike, optional
        Output label GeoTIFF: one uint8 band of class ids, nodata 255, with
        the ISPRS colour table. Not written when None.
    block : int, optional
        Side of the square windows rendered at a time; rounded up to a
        multiple of the internal tile size (512, or 256 for scenes smaller
        than 512 pixels).
    compress : str, optional
        GDAL compression for both files (``deflate``, ``lzw``, ``zstd``,
        ``none``...).

    Raises
    ------
    geoseg.errors.ConfigError
        If ``block`` is not a positive integer (a ``ValueError``).

    Notes
    -----
    Memory is bounded by ``block``, whatever the scene size: the rendered
    block (``count`` x itemsize + 1 bytes per pixel) plus about 35 MB of
    working memory. Files are written under a temporary name next
    to the target and renamed when complete, so a crash never leaves a
    half-written scene under the final name.
    """
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ConfigError(f"block must be a positive integer number of pixels, got {block!r}")
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.windows import Window

    tile = 512 if min(spec.width, spec.height) >= 512 else 256
    step = max(tile, -(-int(block) // tile) * tile)
    predictor = {"predictor": 2} if compress.lower() in ("deflate", "lzw", "zstd") else {}
    common = dict(
        driver="GTiff",
        width=spec.width,
        height=spec.height,
        crs=spec.crs,
        transform=spec.transform,
        tiled=True,
        blockxsize=tile,
        blockysize=tile,
        compress=compress,
        BIGTIFF="IF_SAFER",
    )
    image_profile = dict(
        common,
        count=spec.count,
        dtype=spec.dtype,
        nodata=spec.nodata,
        interleave="pixel",
        **predictor,
    )
    # GDAL would tag three uint8 bands as red, green, blue; NIR-R-G must not claim that.
    image_profile["photometric"] = {"rgb": "RGB", "rgbn": "MINISBLACK", "irrg": "MINISBLACK"}[spec.bands]
    label_profile = dict(common, count=1, dtype="uint8", nodata=NODATA)
    targets = [Path(image_path)] + ([Path(label_path)] if label_path is not None else [])
    temps = [t.with_name(f".{t.name}.partial{t.suffix or '.tif'}") for t in targets]
    try:
        with rasterio.open(temps[0], "w", **image_profile) as img_ds:
            names = _BAND_NAMES[spec.bands]
            for k, name in enumerate(names, start=1):
                img_ds.set_band_description(k, name)
            if spec.bands == "rgbn":
                img_ds.colorinterp = [
                    ColorInterp.red,
                    ColorInterp.green,
                    ColorInterp.blue,
                    ColorInterp.undefined,
                ]
            img_ds.update_tags(SYNTHETIC_SEED=str(spec.seed), BANDS=spec.bands)
            lab_ds = rasterio.open(temps[1], "w", **label_profile) if label_path is not None else None
            try:
                if lab_ds is not None:
                    lab_ds.write_colormap(1, ISPRS.colormap())
                    lab_ds.set_band_description(1, "ISPRS class")
                    lab_ds.update_tags(CLASS_NAMES=";".join(f"{k}={n}" for k, n in enumerate(CLASS_NAMES)))
                for r in range(0, spec.height, step):
                    for c in range(0, spec.width, step):
                        hh, ww = min(step, spec.height - r), min(step, spec.width - c)
                        window = Window(c, r, ww, hh)
                        image, label = render_window(spec, r, c, hh, ww)
                        img_ds.write(image, window=window)
                        if lab_ds is not None:
                            lab_ds.write(label, 1, window=window)
                logger.debug("rendered %d x %d synthetic scene (seed %d)", spec.width, spec.height, spec.seed)
            finally:
                if lab_ds is not None:
                    lab_ds.close()
        for temp, target in zip(temps, targets, strict=True):
            os.replace(temp, target)
    finally:
        for temp in temps:
            for leftover in (temp, temp.with_name(temp.name + ".aux.xml")):
                if leftover.exists():
                    leftover.unlink()


def write_copies(src: str | os.PathLike[str], dst: str | os.PathLike[str], rows: int, cols: int) -> Path:
    """`rows` x `cols` copies of the GeoTIFF `src` side by side in `dst`, written block by block.

    A large scene for memory and speed measurements whose writing needs no
    more memory than one block of `src`.
    """
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(src) as ds:
        profile = ds.profile | {
            "width": cols * ds.width,
            "height": rows * ds.height,
            "tiled": True,
            "compress": "deflate",
        }
        with rasterio.open(dst, "w", **profile) as out:
            for _, win in ds.block_windows(1):
                data = ds.read(window=win)
                for i in range(rows):
                    for j in range(cols):
                        w = Window(win.col_off + j * ds.width, win.row_off + i * ds.height, win.width, win.height)
                        out.write(data, window=w)
    return Path(dst)
