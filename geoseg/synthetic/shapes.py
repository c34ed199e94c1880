"""Painting into a window: the canvas and the objects a town is made of.

:class:`_Canvas` holds the buffers of one window while it is painted
(colour, label, material, height, shading and the texture noise fields).
Objects -- flat rectangles, irregular blobs, prisms (building wings, cars,
containers, hedges, roof units) and tree crowns -- paint themselves into it
with a height buffer, and casters also darken the pixels their shadow falls
on. An object's ``key`` fixes the global paint order, so overlapping
objects come out the same in every window.
"""

from __future__ import annotations

import math

import numpy as np

from .noise import _fmix_py, _key32, _value_noise
from .palette import _LAWN, _M_CAR, _M_GRASS, _M_TILE, _M_TREE, _NOISE_SCALES
from .spec import _BLD, _CAR, _LOW, _TREE, SceneSpec
from .world import _World

__all__ = ["_Blob", "_Box", "_Canvas", "_Car", "_Flat", "_Obj", "_Prism", "_Tree", "_Wing", "_overlaps"]


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
