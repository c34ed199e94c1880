"""End-to-end `geoseg run` throughput vs. model-only forward passes, measured side by side.

    python benchmarks/throughput.py [--size 4096] [--arch unet --encoder resnet34] [--tile 512]

Prints, from one run on this machine:
- model-only forward throughput (tile pixels/s) with the pipeline's CPU layout
  (one intra-op thread per forward, one forward per core) and with one forward
  using all cores, for comparison;
- end-to-end scene throughput of `geoseg run` (a subprocess, so its peak RSS is
  measured alone), its throughput in tile pixels, and the ratio to model-only;
- the class raster's identity for two chunk sizes and the polygon count.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def model_only(ckpt: Path, tile: int, n_tiles: int, workers: int, threads: int) -> float:
    """Tile megapixels per second for `workers` concurrent forward passes of `threads` threads each."""
    from geoseg.predict.engine import Predictor

    pred = Predictor(ckpt, device="cpu", threads=threads)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (1, pred.spec.in_channels, tile, tile), dtype=np.uint8)
    pred.predict(x)  # warm-up
    per = max(1, n_tiles // workers)

    def work() -> None:
        for _ in range(per):
            pred.predict(x)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=work) for _ in range(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return per * workers * tile * tile / 1e6 / (time.perf_counter() - t0)


def run_cli(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of one `geoseg run` subprocess."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "geoseg", *args], check=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 2**20


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

    from geoseg.predict.checkpoint import init_checkpoint
    from geoseg.synthetic import SceneSpec, write_scene
    from geoseg.tiling import TileGrid

    work = a.workdir or Path(tempfile.mkdtemp(prefix="geoseg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    scene = work / f"synthetic{a.size}.tif"
    if not scene.exists():
        write_scene(SceneSpec(width=a.size, height=a.size, pixel_size=0.1, seed=11), scene)
    ckpt = work / f"{a.arch}_{a.encoder}.pt"
    init_checkpoint(ckpt, arch=a.arch, encoder=a.encoder, in_channels=3, seed=0)
    cores = os.cpu_count() or 1
    grid = TileGrid(a.size, a.size, a.tile, a.overlap)
    n_tiles = grid.shape[0] * grid.shape[1]

    mo_layout = model_only(ckpt, a.tile, max(8, cores * 4), workers=cores, threads=1)
    mo_single = model_only(ckpt, a.tile, max(8, cores * 4), workers=1, threads=cores)

    results = {}
    for chunk in [int(c) for c in a.chunks.split(",")]:
        out = work / f"out{chunk}"
        wall, rss = run_cli(["run", str(scene), "--model", str(ckpt), "-o", str(out), "--tile", str(a.tile),
                             "--overlap", str(a.overlap), "--chunk", str(chunk), "--overwrite", "--quiet"])
        report = json.loads((out / f"{scene.stem}.run.json").read_text())
        digest = hashlib.sha256((out / f"{scene.stem}.classes.tif").read_bytes()).hexdigest()[:16]
        results[chunk] = (wall, rss, report, digest)

    scene_mpx = a.size * a.size / 1e6
    tile_mpx = n_tiles * a.tile * a.tile / 1e6
    print(f"\n# geoseg throughput: {a.arch}/{a.encoder}, {a.size}x{a.size} synthetic scene, tile {a.tile}, "
          f"overlap {a.overlap}, CPU, {cores} cores")
    print(f"tiles: {n_tiles} ({tile_mpx:.1f} Mpx of model input for {scene_mpx:.1f} Mpx of scene, "
          f"{grid.recompute_factor:.2f}x)")
    print(f"model-only forward, 1 thread x {cores} concurrent (geoseg's layout): {mo_layout:.3f} tile Mpx/s")
    print(f"model-only forward, {cores} threads x 1:                      {mo_single:.3f} tile Mpx/s")
    print("| chunk | wall s | scene Mpx/s | tile Mpx/s | ratio to model-only | peak RSS GiB | polygons | classes sha256 |")
    print("|---|---|---|---|---|---|---|---|")
    for chunk, (wall, rss, rep, digest) in results.items():
        print(f"| {chunk} | {wall:.1f} | {scene_mpx / wall:.3f} | {tile_mpx / wall:.3f} | "
              f"{tile_mpx / wall / mo_layout:.2f} | {rss:.2f} | {rep['polygons']} | {digest} |")
    same = len({r[3] for r in results.values()}) == 1
    print(f"class rasters identical across chunk sizes: {same}")
    first = next(iter(results.values()))[2]
    print("run.json timings (s):", first["timings_s"], "task seconds:", first["task_seconds"])


if __name__ == "__main__":
    main()
