"""Randomness as pure functions of integers: hashing, value noise and seeded draws.

Textures, illumination and sensor noise are hashed from *global*
coordinates (lattice indices, pixel indices), never drawn from a stream, so
a pixel's value does not depend on the window it is rendered in. The layout
draws from :class:`_Rng`, seeded by the integers that name what is being
drawn (a seed and a cell, a line, a segment).

Examples
--------
>>> import numpy as np
>>> ys = xs = np.arange(8) * 0.5
>>> whole = _value_noise(ys, xs, 2.0, key=7)
>>> bool((_value_noise(ys[3:], xs[2:], 2.0, key=7) == whole[3:, 2:]).all())
True
>>> _Rng(7, 1).u() == _Rng(7, 1).u()
True
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from .palette import _Colour

__all__ = ["_MASK64", "_Rng", "_fmix", "_fmix_py", "_hash2d", "_key32", "_noise1d", "_u01", "_value_noise"]

_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF


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
