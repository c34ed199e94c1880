"""geoseg's vectorisation vs. gdal_polygonize.py writing a GeoPackage, on the same class raster.

    python benchmarks/vectorize.py [--size 8192] [--pixel 0.25] [--workdir DIR]

Makes a synthetic land-cover class raster (the seeded ground truth of
geoseg.synthetic; uint8 class ids, 255 = nodata), then times, side by side in
one run, as whole commands:

- ``gdal_polygonize.py CLASSES -f GPKG out.gpkg`` (4-connectivity, nodata masked),
- ``geoseg vectorize CLASSES --min-area 0 --simplify 0`` (exact pixel polygons),
- ``geoseg vectorize CLASSES`` (default cleaning: 16-pixel unit, 1-pixel simplification),

and checks that the exact output has exactly as many polygons as GDAL's (the
seam merge is exact) and that all geometries are valid.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--pixel", type=float, default=0.25, help="pixel size in metres (smaller objects per pixel)")
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()

    import pyogrio
    import shapely

    from geoseg.synthetic import SceneSpec, write_scene

    polygonize = shutil.which("gdal_polygonize.py") or shutil.which("gdal_polygonize")
    if polygonize is None:
        sys.exit("gdal_polygonize.py not found: install GDAL's Python utilities (Debian: python3-gdal)")
    work = a.workdir or Path(tempfile.mkdtemp(prefix="geoseg-vbench-"))
    work.mkdir(parents=True, exist_ok=True)
    classes = work / f"classes{a.size}.tif"
    if not classes.exists():
        write_scene(SceneSpec(width=a.size, height=a.size, pixel_size=a.pixel, seed=5), work / "image.tif", classes)
    geoseg = [sys.executable, "-m", "geoseg"]
    runs = {}
    for name, cmd, out in (
        ("gdal_polygonize.py -> GPKG", [polygonize, "-q", str(classes), "-f", "GPKG", str(work / "gdal.gpkg"),
                                         "landcover", "class_id"], work / "gdal.gpkg"),
        ("geoseg vectorize, exact", [*geoseg, "vectorize", str(classes), "-o", str(work / "exact.gpkg"),
                                     "--min-area", "0", "--simplify", "0", "-q"], work / "exact.gpkg"),
        ("geoseg vectorize, default cleaning", [*geoseg, "vectorize", str(classes), "-o", str(work / "clean.gpkg"),
                                                "-q"], work / "clean.gpkg"),
    ):
        out.unlink(missing_ok=True)
        runs[name] = (timed(cmd), out)

    counts = {k: pyogrio.read_info(p, layer="landcover")["features"] for k, (_, p) in runs.items()}
    valid = {k: bool(shapely.is_valid(pyogrio.read_dataframe(p, layer="landcover").geometry.values).all())
             for k, (_, p) in runs.items() if "geoseg" in k}
    base = runs["gdal_polygonize.py -> GPKG"][0]
    print(f"\n# vectorisation of a {a.size}x{a.size} class raster ({a.pixel} m pixels), {os.cpu_count()} cores")
    print("| command | wall s | speed-up vs gdal_polygonize.py | polygons | all valid |")
    print("|---|---|---|---|---|")
    for name, (wall, _) in runs.items():
        print(f"| {name} | {wall:.2f} | {base / wall:.2f}x | {counts[name]} | {valid.get(name, '-')} |")
    same = counts["geoseg vectorize, exact"] == counts["gdal_polygonize.py -> GPKG"]
    print(f"exact polygons equal gdal_polygonize's count (no seam cuts): {same}")


if __name__ == "__main__":
    main()
