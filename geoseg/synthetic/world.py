"""The world of one seed: the street grid's frame, the sun and the grid lines.

The town is laid out on a coarse grid of street cells (about 64 m) in a
seeded rotated frame; :class:`_World` converts between that grid frame and
image metres and gives the sun's direction and shadow length. Each grid line
carries a street (:func:`_line`) whose width, sidewalks, parking and trees
are hashed from the seed and the line's index, and runs along a cell or not
(:func:`_has_segment`). Everything is cached per seed and index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from .noise import _Rng, _u01
from .palette import _ASPHALT, _Colour

__all__ = ["_CELL", "_JITTER", "_MAX_HEIGHT", "_REACH", "_World", "_has_segment", "_inset", "_line", "_world"]

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
