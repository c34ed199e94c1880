"""The town's layout: what each street cell contains.

The content of cell ``(i, j)`` is a pure function of ``(seed, i, j)``: a
generator drawn by weight (residential lots, urban perimeter block,
commercial building with parking, park, field or construction site, parking
lot) furnishes the cell's interior, and the cell owns the street segments on
its left and top grid lines. :func:`_gather` collects the objects of every
cell that can reach a window, in paint order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import numpy as np

from .noise import _key32, _Rng
from .palette import (
    _ASPHALT,
    _CARS,
    _CARS_W,
    _CONTAINERS,
    _FIELD_GREEN,
    _FIELD_YELLOW,
    _GLASS,
    _GRAVEL_PATH,
    _HEDGE,
    _LAWN,
    _LAWN_DRY,
    _M_ASPHALT,
    _M_DEBRIS,
    _M_FIELD,
    _M_FLAT,
    _M_GRASS,
    _M_GRAVEL,
    _M_HEDGE,
    _M_MARKING,
    _M_METAL,
    _M_PAVING,
    _M_SOIL,
    _M_TILE,
    _M_WATER,
    _MARKING,
    _METAL,
    _PAVING,
    _POOL,
    _ROOF_FLAT,
    _ROOF_FLAT_W,
    _ROOF_PITCHED,
    _ROOF_PITCHED_W,
    _SOIL,
    _TREE_W,
    _TREES,
    _WATER,
)
from .shapes import _Blob, _Box, _Car, _Flat, _Obj, _overlaps, _Prism, _Tree, _Wing
from .spec import _BLD, _CLU, _IMP, _LOW
from .world import _CELL, _JITTER, _MAX_HEIGHT, _REACH, _has_segment, _inset, _line, _World, _world

__all__ = ["_cell_objects", "_gather"]


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
