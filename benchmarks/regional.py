"""A regional job end to end: batch, resume after SIGKILL, and the regional merge.

    python benchmarks/regional.py [--size 2048] [--grid 2] [--model demo] [--workdir DIR]

Cuts a seeded synthetic mosaic of ``grid x grid`` scenes of ``size`` px (0.25 m,
one pixel grid) into separate GeoTIFFs and runs them as one ``geoseg batch`` job,
side by side in one run:

1. **full**: the whole job, uninterrupted;
2. **killed + resumed**: the same job into another folder, SIGKILLed once the
   middle scene has finished half of its blocks, then run again; the rerun's time
   is the cost of the interruption. Its outputs must equal the full run's (class
   COGs byte for byte, GeoPackage features and attributes);
3. **merge**: the regional layer's polygon count against the per-scene layers'
   sum and against polygonising the mosaic of the scenes' class rasters at once
   (``--exact``: without cleaning they must be equal), its validity, and the merge time.

The model is an installed name or checkpoint (``geoseg demo`` installs ``demo``);
without one, an untrained FCN-R18 is used and the map is speckle.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_scenes(root: Path, size: int, grid: int) -> list[Path]:
    import rasterio
    from rasterio.windows import Window

    from geoseg.synthetic import SceneSpec, write_scene

    mosaic = root / "mosaic.tif"
    write_scene(SceneSpec(width=size * grid, height=size * grid, pixel_size=0.25, seed=42), mosaic)
    (root / "scenes").mkdir()
    paths = []
    with rasterio.open(mosaic) as src:
        for r in range(grid):
            for c in range(grid):
                w = Window(c * size, r * size, size, size)
                profile = src.profile | {"width": size, "height": size, "transform": src.window_transform(w)}
                path = root / "scenes" / f"r{r}c{c}.tif"
                with rasterio.open(path, "w", **profile) as dst:
                    dst.write(src.read(window=w))
                paths.append(path)
    mosaic.unlink()
    return paths


def job(root: Path, name: str, model: str, exact: bool, chunk: int) -> Path:
    """A job file; blocks of `chunk` px, so that a kill lands mid-scene."""
    import yaml

    run = {"chunk": chunk} | ({"min_area": 0, "simplify": 0} if exact else {})
    path = root / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump({"region": name, "scenes": ["scenes/*.tif"], "model": model, "output": name, "run": run})
    )
    return path


def geoseg(*args: object) -> list[str]:
    return [sys.executable, "-m", "geoseg", *map(str, args)]


def done_blocks(store: Path) -> int:
    return sum(1 for p in (store / "done").rglob("*") if p.is_file() and p.name != "zarr.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--grid", type=int, default=2)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--exact", action="store_true", help="exact polygons (no sieve, no simplification)")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()

    import numpy as np
    import pyogrio
    import rasterio
    import shapely
    from rasterio import features

    from geoseg.errors import GeosegError
    from geoseg.models import resolve_model

    root = Path(args.workdir or tempfile.mkdtemp(prefix="geoseg-regional-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        model = str(resolve_model(args.model))
    except GeosegError:
        from geoseg.predict.checkpoint import init_checkpoint

        model = str(root / "untrained.pt")
        init_checkpoint(model, arch="fcn", encoder="resnet18", tile_size=512)
        print(f"no model {args.model!r}: using an untrained FCN-R18 (speckle)")
    scenes = make_scenes(root, args.size, args.grid)
    for name in ("full", "killed"):
        job(root, name, model, args.exact, args.chunk)

    t0 = time.perf_counter()
    subprocess.run(geoseg("batch", root / "full.yaml", "-q"), check=True, cwd=root)
    full = time.perf_counter() - t0

    middle = scenes[len(scenes) // 2].stem
    store = root / "killed" / "scenes" / f"{middle}.zarr"
    proc = subprocess.Popen(geoseg("batch", root / "killed.yaml", "-q"), cwd=root, start_new_session=True)
    t0 = time.perf_counter()
    total_blocks = None
    while proc.poll() is None:
        if store.exists() and total_blocks is None:
            with contextlib.suppress(OSError, ValueError, KeyError):  # not written yet
                total_blocks = int(np.prod(json.loads((store / "done" / "zarr.json").read_text())["shape"]))
        if total_blocks and done_blocks(store) >= total_blocks // 2:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    until_kill = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run(geoseg("batch", root / "killed.yaml", "-q"), check=True, cwd=root)
    resumed = time.perf_counter() - t0
    manifest = json.loads((root / "killed" / "killed.manifest.json").read_text())

    same = True
    for s in scenes:
        a, b = (root / d / "scenes" / f"{s.stem}.classes.tif" for d in ("full", "killed"))
        same &= a.read_bytes() == b.read_bytes()
        ga = pyogrio.raw.read(root / "full" / "scenes" / f"{s.stem}.landcover.gpkg", layer="landcover")
        gb = pyogrio.raw.read(root / "killed" / "scenes" / f"{s.stem}.landcover.gpkg", layer="landcover")
        same &= list(ga[2]) == list(gb[2]) and all(np.array_equal(x, y) for x, y in zip(ga[3], gb[3], strict=True))

    full_manifest = json.loads((root / "full" / "full.manifest.json").read_text())
    per_scene = sum(
        pyogrio.read_info(root / "full" / "scenes" / f"{s.stem}.landcover.gpkg", layer="landcover")["features"]
        for s in scenes
    )
    regional = root / "full" / "full.landcover.gpkg"
    _, _, wkb, _ = pyogrio.raw.read(regional, layer="landcover")
    geoms = shapely.from_wkb(wkb)
    rows = []
    for r in range(args.grid):
        row = []
        for c in range(args.grid):
            with rasterio.open(root / "full" / "scenes" / f"r{r}c{c}.classes.tif") as ds:
                row.append(ds.read(1))
        rows.append(np.concatenate(row, axis=1))
    mosaic = np.concatenate(rows, axis=0)
    t0 = time.perf_counter()
    mosaic_count = sum(1 for _ in features.shapes(mosaic, mask=mosaic != 255, connectivity=4))
    polygonize_mosaic = time.perf_counter() - t0

    # the merge alone, timed again outside the batch
    from geoseg.regional import merge_layers

    t0 = time.perf_counter()
    merged = merge_layers(
        [root / "full" / "scenes" / f"{s.stem}.landcover.gpkg" for s in scenes],
        [root / "full" / "scenes" / f"{s.stem}.run.json" for s in scenes],
        root / "merge-again.gpkg",
        names=[s.stem for s in scenes],
    )
    merge_s = time.perf_counter() - t0

    n = len(scenes)
    mpx = n * args.size**2 / 1e6
    print(
        f"\n{n} scenes of {args.size}² px ({mpx:.1f} Mpx), model {Path(model).name}, chunk {args.chunk}, "
        f"{'exact polygons' if args.exact else 'default cleaning'}"
    )
    print("| | wall s | vs full |")
    print("|---|---|---|")
    print(f"| full batch | {full:.1f} | 1 |")
    print(f"| killed after (scene {middle} half done) | {until_kill:.1f} | {until_kill / full:.2f} |")
    print(f"| rerun after the kill | {resumed:.1f} | {resumed / full:.2f} |")
    print(f"| killed + rerun | {until_kill + resumed:.1f} | {(until_kill + resumed) / full:.2f} |")
    statuses = [s["status"] for s in manifest["scenes"]]
    resumed_blocks = {s["scene"]: s["resumed_blocks"] for s in manifest["scenes"] if s["resumed_blocks"]}
    print(f"rerun statuses {statuses}, resumed blocks {resumed_blocks}; outputs identical to the full run: {same}")
    print(
        f"\nregional layer: {full_manifest['regional']['features']:,} polygons from {per_scene:,} in the scene layers "
        f"({merged.joined:,} pieces joined across scene edges); polygonising the mosaic at once: {mosaic_count:,}"
        f"{' (equal)' if mosaic_count == len(geoms) else ''}"
    )
    print(
        f"valid: {bool(shapely.is_valid(geoms).all())}; merge {merge_s:.2f} s "
        f"(rasterio.features.shapes on the mosaic alone: {polygonize_mosaic:.2f} s)"
    )
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
