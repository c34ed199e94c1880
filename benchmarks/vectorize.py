"""geoseg's vectorisation vs. gdal_polygonize.py writing a GeoPackage, on the same class raster.

    python benchmarks/vectorize.py [--size 8192] [--pixel 0.25] [--repeat 3] [--workdir DIR]

Makes a synthetic land-cover class raster (the seeded ground truth of
geoseg.synthetic; uint8 class ids, 255 = nodata), then times, side by side in
one run, as whole commands, each `--repeat` times in turn (medians reported,
so a busy moment on a shared machine hits all commands alike):

- ``gdal_polygonize.py CLASSES -f GPKG out.gpkg`` (4-connectivity, nodata masked),
- ``geoseg vectorize CLASSES --min-area 0 --simplify 0`` (exact pixel polygons),
- ``geoseg vectorize CLASSES`` (default cleaning: 16-pixel unit, 1-pixel simplification),

and checks that the exact output has exactly as many polygons as GDAL's (the
seam merge is exact) and that all geometries are valid.

Memory: the exact command's peak RSS (largest single process, main or
worker) on the raster and on a mosaic of 2 x 2 copies of it (4x the area).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Runs a command and prints its wall time and the peak RSS (MiB) of the largest process in its tree.
_MEASURE = """
import resource, subprocess, sys, time
t0 = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""


def measured(cmd: list[str]) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], check=True, capture_output=True, text=True).stdout
    wall, rss = out.split()
    return float(wall), float(rss)


def mosaic(src: Path, dst: Path, *, apart: bool) -> None:
    """2 x 2 copies of `src`, written block by block (the raster itself is never whole in memory).

    With `apart`, a one-pixel nodata cross keeps the copies' regions from joining.
    """
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(src) as ds:
        profile = ds.profile | {"width": 2 * ds.width, "height": 2 * ds.height, "tiled": True, "compress": "deflate"}
        with rasterio.open(dst, "w", **profile) as out:
            out.write_colormap(1, ds.colormap(1))
            for _, win in ds.block_windows(1):
                data = ds.read(1, window=win)
                for dy in (0, ds.height):
                    for dx in (0, ds.width):
                        out.write(data, 1, window=Window(win.col_off + dx, win.row_off + dy, win.width, win.height))
            if apart:
                nodata = ds.nodata if ds.nodata is not None else 255
                out.write(
                    np.full((2 * ds.height, 1), nodata, np.uint8), 1, window=Window(ds.width, 0, 1, 2 * ds.height)
                )
                out.write(np.full((1, 2 * ds.width), nodata, np.uint8), 1, window=Window(0, ds.height, 2 * ds.width, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--pixel", type=float, default=0.25, help="pixel size in metres (smaller objects per pixel)")
    ap.add_argument("--repeat", type=int, default=3)
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
    bigs = {"joined": work / f"classes{2 * a.size}.tif", "apart": work / f"classes{2 * a.size}_apart.tif"}
    for kind, path in bigs.items():
        if not path.exists():
            mosaic(classes, path, apart=kind == "apart")
    geoseg = [sys.executable, "-m", "geoseg", "vectorize"]
    commands = {
        "gdal_polygonize.py -> GPKG": (
            [polygonize, "-q", str(classes), "-f", "GPKG", str(work / "gdal.gpkg"), "landcover", "class_id"],
            work / "gdal.gpkg",
        ),
        "geoseg vectorize, exact": (
            [*geoseg, str(classes), "-o", str(work / "exact.gpkg"), "--min-area", "0", "--simplify", "0", "-q"],
            work / "exact.gpkg",
        ),
        "geoseg vectorize, default cleaning": (
            [*geoseg, str(classes), "-o", str(work / "clean.gpkg"), "-q"],
            work / "clean.gpkg",
        ),
    }
    walls: dict[str, list[float]] = {k: [] for k in commands}
    rss: dict[str, float] = {}
    for _ in range(a.repeat):
        for name, (cmd, out) in commands.items():
            out.unlink(missing_ok=True)
            wall, peak = measured(cmd)
            walls[name].append(wall)
            rss[name] = max(rss.get(name, 0.0), peak)
    big_runs = {}
    for kind, path in bigs.items():
        out = work / f"exact_{kind}.gpkg"
        out.unlink(missing_ok=True)
        wall, peak = measured([*geoseg, str(path), "-o", str(out), "--min-area", "0", "--simplify", "0", "-q"])
        big_runs[kind] = (wall, peak, pyogrio.read_info(out, layer="landcover")["features"])

    counts = {k: pyogrio.read_info(p, layer="landcover")["features"] for k, (_, p) in commands.items()}
    valid = {
        k: bool(shapely.is_valid(pyogrio.read_dataframe(p, layer="landcover").geometry.values).all())
        for k, (_, p) in commands.items()
        if "geoseg" in k
    }
    median = {k: statistics.median(v) for k, v in walls.items()}
    base = median["gdal_polygonize.py -> GPKG"]
    print(f"\n# vectorisation of a {a.size}x{a.size} class raster ({a.pixel} m pixels), {os.cpu_count()} cores")
    print(f"median of {a.repeat} interleaved runs; peak RSS = largest single process")
    print("| command | wall s | speed-up vs gdal_polygonize.py | polygons | all valid | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for name, wall in median.items():
        runs = ", ".join(f"{w:.2f}" for w in walls[name])
        print(
            f"| {name} | {wall:.2f} ({runs}) | {base / wall:.2f}x | {counts[name]} | {valid.get(name, '-')} "
            f"| {rss[name]:.0f} |"
        )
    same = counts["geoseg vectorize, exact"] == counts["gdal_polygonize.py -> GPKG"]
    print(f"exact polygons equal gdal_polygonize's count (no seam cuts): {same}")
    small_rss = rss["geoseg vectorize, exact"]
    print(f"\n# memory: exact vectorisation of {a.size}² ({small_rss:.0f} MiB) vs. 2 x 2 copies of it (4x the area)")
    print("| mosaic | polygons | wall s | peak RSS MiB | vs. one copy |")
    print("|---|---|---|---|---|")
    notes = {"apart": "copies apart (nodata cross)", "joined": "copies joined (regions span the mosaic)"}
    for kind, (wall, peak, n) in big_runs.items():
        print(f"| {notes[kind]} | {n} | {wall:.2f} | {peak:.0f} | {peak / small_rss:.2f}x |")


if __name__ == "__main__":
    main()
