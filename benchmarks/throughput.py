"""End-to-end `geoseg run` throughput vs. model-only forward passes, measured side by side.

    python benchmarks/throughput.py [--size 4096] [--arch unet --encoder resnet34] [--tile 512]

Prints, from one run on this machine:
- model-only forward throughput (tile pixels/s) with the pipeline's CPU layout
  (one intra-op thread per forward, one forward per core) and with one forward
  using all cores, for comparison;
- end-to-end scene throughput of `geoseg run` (a subprocess, so its peak RSS,
  summed over its worker processes, is its own), its throughput in tile pixels,
  and the ratio to model-only;
- the class raster's identity for two chunk sizes and the polygon count.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--arch", default="unet")
    ap.add_argument("--encoder", default="resnet34")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--chunks", default="1024,2048")
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()

    from scale import measured, model_only, scene_and_model  # benchmarks/scale.py, beside this script

    from geoseg.tiling import TileGrid

    work, scene, ckpt = scene_and_model(a.workdir, a.size, a.arch, a.encoder, a.tile, "geoseg-bench-")
    cores = os.cpu_count() or 1
    grid = TileGrid(a.size, a.size, a.tile, a.overlap)
    n_tiles = grid.shape[0] * grid.shape[1]

    mo_layout = model_only(ckpt, a.tile, "fp32", max(8, cores * 4), workers=cores, threads=1)
    mo_single = model_only(ckpt, a.tile, "fp32", max(8, cores * 4), workers=1, threads=cores)

    results = {}
    for chunk in [int(c) for c in a.chunks.split(",")]:
        out = work / f"out{chunk}"
        wall, rss = measured(
            [
                sys.executable,
                "-m",
                "geoseg",
                "run",
                str(scene),
                "--model",
                str(ckpt),
                "-o",
                str(out),
                "--tile",
                str(a.tile),
                "--overlap",
                str(a.overlap),
                "--chunk",
                str(chunk),
                "--precision",
                "fp32",
                "--overwrite",
                "--quiet",
            ]
        )
        report = json.loads((out / f"{scene.stem}.run.json").read_text())
        digest = hashlib.sha256((out / f"{scene.stem}.classes.tif").read_bytes()).hexdigest()[:16]
        results[chunk] = (wall, rss, report, digest)

    scene_mpx = a.size * a.size / 1e6
    tile_mpx = n_tiles * a.tile * a.tile / 1e6
    print(
        f"\n# geoseg throughput: {a.arch}/{a.encoder}, {a.size}x{a.size} synthetic scene, tile {a.tile}, "
        f"overlap {a.overlap}, CPU, {cores} cores"
    )
    print(
        f"tiles: {n_tiles} ({tile_mpx:.1f} Mpx of model input for {scene_mpx:.1f} Mpx of scene, "
        f"{grid.recompute_factor:.2f}x)"
    )
    print(f"model-only forward, 1 thread x {cores} concurrent (geoseg's layout): {mo_layout:.3f} tile Mpx/s")
    print(f"model-only forward, {cores} threads x 1:                      {mo_single:.3f} tile Mpx/s")
    print("| chunk | wall s | scene Mpx/s | tile Mpx/s | ratio to model-only | peak RSS GiB | polygons | sha256 |")
    print("|---|---|---|---|---|---|---|---|")
    for chunk, (wall, rss, rep, digest) in results.items():
        print(
            f"| {chunk} | {wall:.1f} | {scene_mpx / wall:.3f} | {tile_mpx / wall:.3f} | "
            f"{tile_mpx / wall / mo_layout:.2f} | {rss:.2f} | {rep['polygons']} | {digest} |"
        )
    same = len({r[3] for r in results.values()}) == 1
    print(f"class rasters identical across chunk sizes: {same}")
    first = next(iter(results.values()))[2]
    print("run.json timings (s):", first["timings_s"], "task seconds:", first["task_seconds"])


if __name__ == "__main__":
    main()
