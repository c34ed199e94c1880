"""Class raster -> land-cover polygons, block by block, merged exactly across block edges.

Each block's 4-connected regions of one class become one polygon each
(``rasterio.features.shapes``) in *global pixel coordinates*: vertex
coordinates are whole numbers, so the edges of polygons on either side of a
block seam coincide exactly. A region cut by a seam is found by comparing the
region labels on both sides of the seam pixel by pixel (:class:`SeamMerger`,
one row of blocks at a time), and its pieces are dissolved with a coverage
union (exact for edge-matched pieces). The result is the same set of polygons
as polygonising the whole raster at once.

Geometries move into the scene's CRS only at the end, with its affine
transform; areas and perimeters are measured in metres (see :func:`measure`).

The stage's modules, in the order a block goes through them::

    polygons   label a block's regions and polygonise them (BlockPolygons, Polygons, Features)
    cleaning   minimum mapping unit (sieve) and area-bounded coverage simplification
    seams      join regions cut by block edges (SeamMerger), exactly
    georef     into the scene's CRS; areas and perimeters in metres (Georef)
    cells      a run's vector stage: the raster cell by cell into a GeoPackage (vectorize_cells)
    raster     ``geoseg vectorize``: a class GeoTIFF into a GeoPackage (vectorize_raster)
"""

from __future__ import annotations

from .cells import ClassSource, VectorSummary, vectorize_cells
from .cleaning import MAX_AREA_CHANGE, Cleaning, apply_sieve, clean_block, sieve, simplify, simplify_bounded
from .georef import Georef, area_method, measure, pixel_areas, to_crs
from .polygons import BlockPolygons, Features, Polygons, label_regions, polygonize_block
from .raster import VectorizeResult, vectorize_raster
from .seams import SeamMerger, UnionFind, dissolve_pieces, merge_blocks, split_block

__all__ = [
    "MAX_AREA_CHANGE",
    "BlockPolygons",
    "ClassSource",
    "Cleaning",
    "Features",
    "Georef",
    "Polygons",
    "SeamMerger",
    "UnionFind",
    "VectorSummary",
    "VectorizeResult",
    "apply_sieve",
    "area_method",
    "clean_block",
    "dissolve_pieces",
    "label_regions",
    "measure",
    "merge_blocks",
    "pixel_areas",
    "polygonize_block",
    "sieve",
    "simplify",
    "simplify_bounded",
    "split_block",
    "to_crs",
    "vectorize_cells",
    "vectorize_raster",
]
