"""The global tile grid and the block plan: pure geometry, no I/O.

Tiles are anchored at the scene origin. With tile size ``T`` and overlap ``O``
the *stride* is ``S = T - O`` and the *margin* ``m = O / 2``. Tile ``k`` (along
one axis) owns the *core* ``[k*S, (k+1)*S)`` and reads the *extent*
``[k*S - m, (k+1)*S + m)``; neighbouring extents overlap by exactly ``O``
pixels, where their predictions are blended (see :mod:`geoseg.stitch`).

A *block* is the unit of Dask work: a rectangle of whole tiles. Its core is the
union of its tiles' cores (clipped to the scene) and its extent the union of
its tiles' extents. Because the grid is global, the set of tiles covering any
pixel, and each tile's input, are the same whatever the block size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["DEFAULT_OVERLAP", "TILE_MULTIPLE", "Block", "BlockPlan", "Rect", "TileGrid"]

#: Pixels shared by neighbouring tiles, blended, unless a run says otherwise.
DEFAULT_OVERLAP = 64

#: Tile sizes are multiples of the encoders' output stride.
TILE_MULTIPLE = 32


@dataclass(frozen=True)
class Rect:
    """A half-open pixel rectangle ``[row0, row1) x [col0, col1)`` in global coordinates."""

    row0: int
    col0: int
    row1: int
    col1: int

    @property
    def height(self) -> int:
        return self.row1 - self.row0

    @property
    def width(self) -> int:
        return self.col1 - self.col0

    @property
    def empty(self) -> bool:
        return self.height <= 0 or self.width <= 0

    def intersect(self, other: Rect) -> Rect:
        return Rect(
            max(self.row0, other.row0),
            max(self.col0, other.col0),
            min(self.row1, other.row1),
            min(self.col1, other.col1),
        )

    def slices(self, origin: Rect | None = None) -> tuple[slice, slice]:
        """Array slices of this rectangle inside an array whose top-left is `origin`."""
        r0, c0 = (origin.row0, origin.col0) if origin else (0, 0)
        return slice(self.row0 - r0, self.row1 - r0), slice(self.col0 - c0, self.col1 - c0)


@dataclass(frozen=True)
class TileGrid:
    """Tiles of ``tile`` pixels overlapping by ``overlap`` over a ``height x width`` scene.

    Examples
    --------
    >>> g = TileGrid(height=1000, width=700, tile=512, overlap=64)
    >>> g.stride, g.margin, g.shape
    (448, 32, (3, 2))
    >>> g.tile_extent(0, 1)
    Rect(row0=-32, col0=416, row1=480, col1=928)
    """

    height: int
    width: int
    tile: int = 512
    overlap: int = DEFAULT_OVERLAP

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"scene size must be positive, got {self.height}x{self.width}")
        if self.tile < 16:
            raise ValueError(f"tile size must be at least 16 px, got {self.tile}")
        if self.overlap < 0 or self.overlap % 2:
            raise ValueError(f"overlap must be an even number of pixels >= 0, got {self.overlap}")
        if 2 * self.overlap > self.tile:
            raise ValueError(
                f"overlap {self.overlap} is more than half the tile size {self.tile}; "
                f"use --overlap {self.tile // 2 // 2 * 2} or less"
            )

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @property
    def margin(self) -> int:
        return self.overlap // 2

    @property
    def shape(self) -> tuple[int, int]:
        """Number of tiles (rows, cols)."""
        return (math.ceil(self.height / self.stride), math.ceil(self.width / self.stride))

    def tile_extent(self, ty: int, tx: int) -> Rect:
        """The pixels tile ``(ty, tx)`` reads (may extend past the scene)."""
        s, m = self.stride, self.margin
        return Rect(ty * s - m, tx * s - m, ty * s - m + self.tile, tx * s - m + self.tile)

    def tile_core(self, ty: int, tx: int) -> Rect:
        """The pixels tile ``(ty, tx)`` owns, clipped to the scene."""
        s = self.stride
        return Rect(ty * s, tx * s, min((ty + 1) * s, self.height), min((tx + 1) * s, self.width))

    @property
    def recompute_factor(self) -> float:
        """Model pixels computed per scene pixel (tiles' area over the scene's area)."""
        ny, nx = self.shape
        return ny * nx * self.tile * self.tile / (self.height * self.width)


@dataclass(frozen=True)
class Block:
    """One unit of Dask work: tiles ``[ty0, ty1) x [tx0, tx1)`` of the grid."""

    by: int
    bx: int
    ty0: int
    tx0: int
    ty1: int
    tx1: int
    core: Rect
    extent: Rect

    @property
    def index(self) -> tuple[int, int]:
        return (self.by, self.bx)

    @property
    def n_tiles(self) -> int:
        return (self.ty1 - self.ty0) * (self.tx1 - self.tx0)

    def tiles(self) -> Iterator[tuple[int, int]]:
        """Tile indices in row-major order."""
        for ty in range(self.ty0, self.ty1):
            for tx in range(self.tx0, self.tx1):
                yield ty, tx


@dataclass(frozen=True)
class BlockPlan:
    """Blocks of ``tiles_per_block x tiles_per_block`` tiles covering the grid.

    Use :meth:`from_chunk` to size blocks in pixels.

    Examples
    --------
    >>> plan = BlockPlan.from_chunk(TileGrid(3000, 2500, 512, 64), chunk=1024)
    >>> plan.tiles_per_block, plan.block_size, plan.shape
    (2, 896, (4, 3))
    """

    grid: TileGrid
    tiles_per_block: int

    def __post_init__(self) -> None:
        if self.tiles_per_block < 1:
            raise ValueError(f"tiles_per_block must be >= 1, got {self.tiles_per_block}")

    @classmethod
    def from_chunk(cls, grid: TileGrid, chunk: int) -> BlockPlan:
        """Blocks as close to `chunk` pixels as whole tiles allow (never below one tile)."""
        if chunk < 1:
            raise ValueError(f"chunk must be positive, got {chunk}")
        return cls(grid, max(1, chunk // grid.stride))

    @property
    def block_size(self) -> int:
        """Core size of a full block in pixels."""
        return self.tiles_per_block * self.grid.stride

    @property
    def shape(self) -> tuple[int, int]:
        ny, nx = self.grid.shape
        return (math.ceil(ny / self.tiles_per_block), math.ceil(nx / self.tiles_per_block))

    def __len__(self) -> int:
        ny, nx = self.shape
        return ny * nx

    def block(self, by: int, bx: int) -> Block:
        ny, nx = self.shape
        if not (0 <= by < ny and 0 <= bx < nx):
            raise IndexError(f"block ({by}, {bx}) outside plan of {ny}x{nx} blocks")
        g, n = self.grid, self.tiles_per_block
        gty, gtx = g.shape
        ty0, tx0 = by * n, bx * n
        ty1, tx1 = min(ty0 + n, gty), min(tx0 + n, gtx)
        first, last = g.tile_extent(ty0, tx0), g.tile_extent(ty1 - 1, tx1 - 1)
        core = Rect(ty0 * g.stride, tx0 * g.stride, min(ty1 * g.stride, g.height), min(tx1 * g.stride, g.width))
        extent = Rect(first.row0, first.col0, last.row1, last.col1)
        return Block(by, bx, ty0, tx0, ty1, tx1, core, extent)

    def blocks(self) -> Iterator[Block]:
        ny, nx = self.shape
        for by in range(ny):
            for bx in range(nx):
                yield self.block(by, bx)

    def neighbours(self, by: int, bx: int) -> list[tuple[int, int]]:
        """Indices of the up to 8 blocks around ``(by, bx)`` (not itself)."""
        ny, nx = self.shape
        return [
            (y, x)
            for y in range(by - 1, by + 2)
            for x in range(bx - 1, bx + 2)
            if (y, x) != (by, bx) and 0 <= y < ny and 0 <= x < nx
        ]
