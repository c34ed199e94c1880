"""Per-class area of the cleaned polygons vs. the class raster, on a noisy and a realistic map.

    python benchmarks/areas.py [--size 4096] [--pixel 0.1] [--workers 2] [--workdir DIR]

Builds two `--size`² class rasters (uint8 class ids, 255 = nodata, UTM, `--pixel` m):

- ``realistic``: the seeded ground truth of a geoseg.synthetic town (roads, roofs, trees, cars,
  a nodata collar);
- ``noisy``: small random blobs (~4 px across) with 5 % speckle, ~80 pixels per region after the
  sieve: the worst case for simplification, whose corner cutting shifts area between classes.

Each is vectorised with the default cleaning (``vectorize_raster``: 16-pixel mapping unit, 1-pixel
coverage simplification). The class raster the polygons describe is the sieved map (what
``geoseg run`` writes as the class COG); it is rebuilt here independently (the sieve in one block)
and its per-class area (pixel count x pixel area) compared with what geoseg reports
(``class_areas``, must be equal) and with the sum of the polygons' ``area_m2`` in the GeoPackage
(must be within 0.5 %).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def noisy_map(n: int, seed: int = 1) -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    zoom = 4
    field = ndimage.zoom(rng.random((n // zoom + 2, n // zoom + 2)), zoom, order=1)[:n, :n]
    field += rng.normal(0, 0.05, (n, n))
    cls = np.digitize(field, np.quantile(field, [0.3, 0.5, 0.65, 0.8, 0.9])).astype(np.uint8)
    spots = rng.random((n, n)) < 0.05
    cls[spots] = rng.integers(0, 6, spots.sum())
    return cls


def realistic_map(n: int, pixel: float, workdir: Path) -> np.ndarray:
    import rasterio

    from geoseg.synthetic import SceneSpec, write_scene

    write_scene(
        SceneSpec(width=n, height=n, pixel_size=pixel, seed=21, nodata=0), workdir / "img.tif", workdir / "lab.tif"
    )
    with rasterio.open(workdir / "lab.tif") as ds:
        return ds.read(1)


def sieved(cls: np.ndarray, min_pixels: float) -> np.ndarray:
    from geoseg.tiling import Rect
    from geoseg.vectorize import apply_sieve, polygonize_block, sieve

    regions = polygonize_block(cls, None, Rect(0, 0, *cls.shape), geometry=False, adjacency=True)
    return apply_sieve(cls, sieve({(0, 0): regions}, min_pixels)[(0, 0)])


def compare(name: str, cls: np.ndarray, pixel: float, workers: int, workdir: Path) -> float:
    import pyogrio
    import shapely
    from affine import Affine

    from geoseg.classes import ISPRS, NODATA
    from geoseg.vectorize import vectorize_raster
    from tests.conftest import write_tif

    path = write_tif(
        workdir / f"{name}.classes.tif", cls, transform=Affine(pixel, 0, 500000.0, 0, -pixel, 5800000.0), nodata=NODATA
    )
    t0 = time.perf_counter()
    res = vectorize_raster(path, workdir / f"{name}.gpkg", workers=workers)
    seconds = time.perf_counter() - t0
    df = pyogrio.read_dataframe(res.path, layer="landcover")
    raster = sieved(cls, res.cleaning.min_pixels)
    valid = (raster != NODATA).mean()
    print(
        f"\n{name}: {cls.shape[1]} x {cls.shape[0]} px of {pixel} m, {valid:.1%} valid, "
        f"{res.n_polygons:,} polygons, {shapely.get_num_coordinates(df.geometry.values).sum():,} vertices, "
        f"{seconds:.1f} s ({workers} workers)"
    )
    print(f"{'class':<20} {'class COG m²':>14} {'reported m²':>14} {'polygons m²':>14} {'polygons/COG - 1':>17}")
    worst = 0.0
    for cid, cname in enumerate(ISPRS.names):
        cog = float((raster == cid).sum()) * pixel * pixel
        reported = res.class_areas[cname]
        polygons = float(df.area_m2[df.class_id == cid].sum())
        rel = polygons / cog - 1 if cog else 0.0
        worst = max(worst, abs(rel))
        assert reported == cog or abs(reported / cog - 1) < 1e-12, (cname, reported, cog)
        print(f"{cname:<20} {cog:>14,.2f} {reported:>14,.2f} {polygons:>14,.2f} {rel:>+16.4%}")
    print(f"max |polygons/COG - 1| per class: {worst:.4%}  (bound 0.5 %); reported = COG for every class")
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--pixel", type=float, default=0.1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.conftest's GeoTIFF writer
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        work = Path(tmp)
        worst = max(
            compare("noisy", noisy_map(a.size), a.pixel, a.workers, work),
            compare("realistic", realistic_map(a.size, a.pixel, work), a.pixel, a.workers, work),
        )
    print(f"\nworst class on either map: {worst:.4%}")
    if worst > 0.005:
        sys.exit("a class's polygon area is more than 0.5 % off the class raster's")


if __name__ == "__main__":
    main()
