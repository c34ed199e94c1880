"""Blend overlapping tile predictions into class and confidence rasters.

Each tile's softmax probabilities are weighted by a smooth window that is 1 in
the tile's interior and falls off as a squared sine over the ``overlap``-wide
bands it shares with its neighbours. Neighbouring windows sum to exactly 1
there, so the blend is a partition of unity::

    w(p) = sin^2(pi/2 * (p + 1/2) / O)   for the first O pixels of a tile
         = 1                              in the interior
         = mirror image                   for the last O pixels

The weighted probabilities are accumulated in **fixed point** (``int32``,
``2**FIXED_BITS`` per unit): integer addition is exact, so the result is the
same whichever order tiles, blocks or workers contribute. This is what makes
the class raster byte-identical for any chunk size and scheduler.

Per pixel, ``class = argmax_c acc_c`` (lowest id on ties) and
``confidence = round(255 * max_c acc_c / sum_c acc_c)``.

A block (see :mod:`geoseg.tiling`) can finalise the inside of its core on its
own; only a band ``margin`` pixels wide along an edge it shares with another
block also receives predictions from that block's tiles. So a block's first
pass returns a :class:`BlockPartial` (its provisional class/confidence and its
accumulator along its edges) and :func:`finish_block` adds the neighbours'
edges to finalise those bands. Each neighbour receives only the pieces that
reach its core (:meth:`BlockPartial.toward`), so a finished block's core arrays
and the edge pieces its neighbours have used can be released at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .classes import NODATA
from .tiling import Block, BlockPlan, Rect

__all__ = [
    "FIXED_BITS",
    "BlockPartial",
    "accumulate",
    "finalize",
    "finish_block",
    "make_partial",
    "ramp",
    "tile_weights",
]

#: Fixed-point resolution of the blend: probabilities are summed in units of 2**-FIXED_BITS.
FIXED_BITS = 24
_SCALE = np.float32(2**FIXED_BITS)


def ramp(tile: int, overlap: int) -> np.ndarray:
    """1-D blending window of length `tile` (float32).

    Examples
    --------
    >>> w = ramp(8, 4)
    >>> bool(np.allclose(w[4:] + ramp(8, 4)[:4], 1.0))  # neighbours overlapping by 4 sum to 1
    True
    """
    w = np.ones(tile, dtype=np.float64)
    if overlap > 0:
        p = np.arange(overlap, dtype=np.float64)
        up = np.sin(np.pi / 2 * (p + 0.5) / overlap) ** 2
        w[:overlap] = up
        w[tile - overlap :] = up[::-1]
    return w.astype(np.float32)


def tile_weights(tile: int, overlap: int) -> np.ndarray:
    """2-D blending window ``(tile, tile)``: the outer product of :func:`ramp`."""
    r = ramp(tile, overlap)
    return np.outer(r, r)


def accumulate(acc: np.ndarray, acc_rect: Rect, probs: np.ndarray, weights: np.ndarray, tile_rect: Rect) -> None:
    """Add one tile's weighted probabilities, in fixed point, into an accumulator.

    Parameters
    ----------
    acc : ndarray of int32, shape (K, H, W)
        Accumulator covering `acc_rect` (global pixel coordinates).
    probs : ndarray of float32, shape (K, T, T)
        The tile's class probabilities.
    weights : ndarray of float32, shape (T, T)
        :func:`tile_weights`.
    tile_rect : Rect
        Where the tile lies in global pixel coordinates.
    """
    inter = tile_rect.intersect(acc_rect)
    if inter.empty:
        return
    src = inter.slices(tile_rect)
    contrib = np.rint(probs[:, src[0], src[1]] * (weights[src] * _SCALE)).astype(np.int32)
    dst = inter.slices(acc_rect)
    acc[:, dst[0], dst[1]] += contrib


def finalize(acc: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class ids and confidence (uint8, 0-255) from a fixed-point accumulator.

    Pixels where `valid` is False, or that no tile covered, get class
    :data:`~geoseg.classes.NODATA` and confidence 0.
    """
    cls = np.argmax(acc, axis=0).astype(np.uint8)
    top = np.take_along_axis(acc, cls[None].astype(np.intp), axis=0)[0].astype(np.float64)
    total = acc.sum(axis=0, dtype=np.int64).astype(np.float64)
    covered = total > 0
    conf = np.zeros(cls.shape, dtype=np.uint8)
    np.floor(255.0 * top / np.where(covered, total, 1.0) + 0.5, out=top)
    conf[covered] = top[covered].astype(np.uint8)
    bad = ~covered if valid is None else ~(covered & valid)
    cls[bad] = NODATA
    conf[bad] = 0
    return cls, conf


@dataclass
class BlockPartial:
    """A block after its own tiles: provisional outputs plus its accumulator along shared edges.

    Attributes
    ----------
    index : (int, int)
        Block index.
    classes, confidence : ndarray of uint8, shape of the block core
        Final except within `margin` of an edge shared with another block.
    valid : ndarray of bool, shape of the block core
        Scene data mask.
    pieces : list of (Rect, ndarray)
        Non-overlapping parts of the block's accumulator (int32, ``(K, h, w)``)
        within ``2 * margin`` of its extent's edges that face another block.
    """

    index: tuple[int, int]
    classes: np.ndarray
    confidence: np.ndarray
    valid: np.ndarray
    pieces: list[tuple[Rect, np.ndarray]] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return self.classes.nbytes * 3 + sum(a.nbytes for _, a in self.pieces)

    def trimmed(self, core: Rect) -> BlockPartial:
        """This partial with only the parts of its pieces inside its own `core`: what finishing it needs."""
        return BlockPartial(self.index, self.classes, self.confidence, self.valid, self.toward(core))

    def toward(self, core: Rect) -> list[tuple[Rect, np.ndarray]]:
        """The parts of the pieces that reach another block's `core`: copies, so they outlive this partial."""
        out = []
        for rect, piece in self.pieces:
            inter = rect.intersect(core)
            if not inter.empty:
                s = inter.slices(rect)
                out.append((inter, piece[:, s[0], s[1]].copy()))
        return out


def _sides(plan: BlockPlan, block: Block) -> tuple[bool, bool, bool, bool]:
    """Whether another block lies above, below, left and right of `block`."""
    ny, nx = plan.shape
    return block.by > 0, block.by < ny - 1, block.bx > 0, block.bx < nx - 1


def make_partial(plan: BlockPlan, block: Block, acc: np.ndarray, valid: np.ndarray) -> BlockPartial:
    """Split a block's accumulator (over its extent) into a :class:`BlockPartial`.

    `valid` covers the block core.
    """
    ext, core = block.extent, block.core
    cls, conf = finalize(acc[(slice(None), *core.slices(ext))], valid)
    r = 2 * plan.grid.margin
    pieces: list[tuple[Rect, np.ndarray]] = []
    if r:
        top, bottom, left, right = _sides(plan, block)
        rows0 = ext.row0 + r if top else ext.row0
        rows1 = ext.row1 - r if bottom else ext.row1
        rects = []
        if top:
            rects.append(Rect(ext.row0, ext.col0, ext.row0 + r, ext.col1))
        if bottom:
            rects.append(Rect(ext.row1 - r, ext.col0, ext.row1, ext.col1))
        if left:
            rects.append(Rect(rows0, ext.col0, rows1, ext.col0 + r))
        if right:
            rects.append(Rect(rows0, ext.col1 - r, rows1, ext.col1))
        for rect in rects:
            if not rect.empty:
                s = rect.slices(ext)
                pieces.append((rect, acc[:, s[0], s[1]].copy()))
    return BlockPartial(block.index, cls, conf, valid, pieces)


def _bands(plan: BlockPlan, block: Block) -> list[Rect]:
    """Non-overlapping rectangles of the core within `margin` of an edge shared with another block."""
    m = plan.grid.margin
    core = block.core
    if m == 0:
        return []
    top, bottom, left, right = _sides(plan, block)
    r0 = min(core.row0 + m, core.row1) if top else core.row0
    r1 = max(core.row1 - m, r0) if bottom else core.row1
    out = []
    if top:
        out.append(Rect(core.row0, core.col0, r0, core.col1))
    if bottom:
        out.append(Rect(r1, core.col0, core.row1, core.col1))
    c0 = min(core.col0 + m, core.col1) if left else core.col0
    c1 = max(core.col1 - m, c0) if right else core.col1
    if left:
        out.append(Rect(r0, core.col0, r1, c0))
    if right:
        out.append(Rect(r0, c1, r1, core.col1))
    return [b for b in out if not b.empty]


def finish_block(
    plan: BlockPlan, own: BlockPartial, neighbours: Sequence[Sequence[tuple[Rect, np.ndarray]]]
) -> tuple[np.ndarray, np.ndarray]:
    """Final class and confidence of a block core, given its own partial and its neighbours' pieces.

    `neighbours` holds, for each neighbouring block, the pieces of its partial
    that reach this block's core (:meth:`BlockPartial.toward`; more pieces do no harm).
    """
    block = plan.block(*own.index)
    cls, conf = own.classes.copy(), own.confidence.copy()
    contributors = [own.pieces, *neighbours]
    for band in _bands(plan, block):
        acc = None
        for pieces in contributors:
            for rect, piece in pieces:
                inter = rect.intersect(band)
                if inter.empty:
                    continue
                if acc is None:
                    acc = np.zeros((piece.shape[0], band.height, band.width), dtype=np.int32)
                s, d = inter.slices(rect), inter.slices(band)
                acc[:, d[0], d[1]] += piece[:, s[0], s[1]]
        if acc is None:
            continue
        k = band.slices(block.core)
        c, f = finalize(acc, own.valid[k])
        cls[k], conf[k] = c, f
    return cls, conf
