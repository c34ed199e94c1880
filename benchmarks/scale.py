"""Scale: geoseg against model-only forward passes, against a plain script, and in memory vs. scene size.

    python benchmarks/scale.py [--size 4096] [--big 16384] [--arch unet --encoder resnet34]
                               [--tile 512] [--overlap 64] [--precision auto] [--skip-big]

Everything below runs in one invocation, side by side, on the same synthetic
scene and the same weights (``--model``, a trained checkpoint, or untrained seeded
weights of ``--arch``/``--encoder``), so the ratios compare like with like.
Untrained weights give a speckled map with tens of times more polygons than a
trained model's, which makes vectorisation unrepresentatively slow: pass a trained
model for figures that mean something.

(a) end-to-end ``geoseg run`` scene throughput ÷ model-only forward throughput at
    the same tile, batch and precision (geoseg's CPU layout: one intra-op thread per
    forward pass, one pass per core), both in scene pixels per second;
(b) peak RSS of ``geoseg run`` on the ``--size`` scene and on a ``--big`` one (a
    mosaic of copies of the first, written block by block, so making it needs no
    memory either);
(c) ``geoseg run`` against the plain script people write by hand (whole-scene
    read with rasterio, batch-1 fp32 forward passes, centre crops pasted into a
    class array, ``rasterio.features.shapes`` into a GeoPackage), on the same
    scene and weights: throughput, peak RSS, and how often each agrees with a
    whole-scene reference along tile seams.

Each command runs as a subprocess, so its peak RSS is its own (summed over the
worker processes it starts).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

# The plain script, as its own program (so its memory is measured alone).
PLAIN = r"""
import math, sys, time
import numpy as np, rasterio, torch, geopandas as gpd, shapely
from rasterio import features
from geoseg.predict.checkpoint import load_checkpoint

scene, ckpt, tile, overlap, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(2)
model, spec = load_checkpoint(ckpt)
mean = torch.tensor(spec.mean).view(1, -1, 1, 1); std = torch.tensor(spec.std).view(1, -1, 1, 1)
with rasterio.open(scene) as ds:
    img = ds.read(); transform, crs = ds.transform, ds.crs
_, h, w = img.shape
m = overlap // 2; stride = tile - overlap
padded = np.pad(img, ((0, 0), (m, m + tile), (m, m + tile)), mode="reflect")
classes = np.zeros((h, w), np.uint8)
with torch.inference_mode():
    for y in range(0, h, stride):
        for x in range(0, w, stride):
            t = torch.from_numpy(padded[None, :, y : y + tile, x : x + tile].astype(np.float32))
            pred = model((t - mean) / std).argmax(1)[0].numpy()
            ch, cw = min(stride, h - y), min(stride, w - x)
            classes[y : y + ch, x : x + cw] = pred[m : m + ch, m : m + cw]
shapes = list(features.shapes(classes, transform=transform, connectivity=4))
gdf = gpd.GeoDataFrame({"class_id": [int(v) for _, v in shapes]},
                       geometry=[shapely.geometry.shape(g) for g, _ in shapes], crs=crs)
gdf.to_file(out, layer="landcover", driver="GPKG")
np.save(out + ".npy", classes)
"""


def measured(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of one command run alone.

    The RSS is that of the whole process tree (the command and every worker
    process it starts), sampled every 50 ms: the peak of the sum, not the
    largest single process.
    """
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    top = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = top.memory_info().rss + sum(c.memory_info().rss for c in top.children(recursive=True))
        except psutil.Error:  # a worker ended between listing and reading it
            continue
        peak = max(peak, rss)
        time.sleep(0.05)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return time.perf_counter() - t0, peak / 2**30


def scene_and_model(
    workdir: Path | None, size: int, arch: str, encoder: str, tile: int, prefix: str, model: Path | None = None
) -> tuple[Path, Path, Path]:
    """The benchmarks' seeded synthetic scene and `model`, or a seeded untrained one: (workdir, scene, checkpoint)."""
    from geoseg.predict.checkpoint import init_checkpoint
    from geoseg.synthetic import SceneSpec, write_scene

    work = workdir or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    scene = work / f"scene{size}.tif"
    if not scene.exists():
        write_scene(SceneSpec(width=size, height=size, pixel_size=0.1, seed=11), scene)
    if model is not None:
        return work, scene, model.resolve()
    ckpt = work / f"{arch}_{encoder}.pt"
    init_checkpoint(ckpt, arch=arch, encoder=encoder, in_channels=3, seed=0, tile_size=tile)
    return work, scene, ckpt


def model_only(ckpt: Path, tile: int, precision: str, n_tiles: int, workers: int, threads: int = 1) -> float:
    """Tile megapixels per second for `workers` concurrent forward passes of `threads` threads each
    (geoseg's CPU layout: one thread per pass, one pass per core)."""
    from geoseg.predict.engine import Predictor

    pred = Predictor(ckpt, device="cpu", threads=threads, precision=precision)
    x = np.random.default_rng(0).integers(0, 255, (1, pred.spec.in_channels, tile, tile), dtype=np.uint8)
    per = max(1, n_tiles // workers)
    start = threading.Barrier(workers + 1)

    def work() -> None:
        pred.predict(x)  # warm-up, in each thread
        start.wait()
        for _ in range(per):
            pred.predict(x)

    pool = [threading.Thread(target=work) for _ in range(workers)]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    return per * workers * tile * tile / 1e6 / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--big", type=int, default=16384)
    ap.add_argument("--model", type=Path, default=None, help="a trained checkpoint (default: untrained, seeded)")
    ap.add_argument("--arch", default="unet")
    ap.add_argument("--encoder", default="resnet34")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--skip-big", action="store_true", help="leave out (b)'s big scene (minutes on 2 cores)")
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()

    import rasterio

    from geoseg.predict.engine import resolve_device, resolve_precision
    from geoseg.tiling import TileGrid

    work, scene, ckpt = scene_and_model(a.workdir, a.size, a.arch, a.encoder, a.tile, "geoseg-scale-", a.model)
    cores = os.cpu_count() or 1
    precision = resolve_precision(resolve_device("cpu"), a.precision)
    grid = TileGrid(a.size, a.size, a.tile, a.overlap)
    tiles = grid.shape[0] * grid.shape[1]
    scene_mpx = a.size**2 / 1e6
    recompute = tiles * a.tile**2 / 1e6 / scene_mpx

    def geoseg_run(path: Path, out: Path, *extra: str) -> tuple[float, float, dict]:
        cli = [sys.executable, "-m", "geoseg", "run", str(path), "--model", str(ckpt), "-o", str(out)]
        wall, rss = measured([*cli, "--tile", str(a.tile), "--overlap", str(a.overlap), "--overwrite", "-q", *extra])
        return wall, rss, json.loads((out / f"{path.stem}.run.json").read_text())

    def model_only_scene() -> float:
        """Model-only throughput in scene Mpx/s (the machine's speed drifts: measure next to each run)."""
        return model_only(ckpt, a.tile, precision, 12 * cores, cores) / recompute

    # (a) model-only vs end to end, same precision: model-only measured just before and after
    mo_before = model_only_scene()
    wall, rss, report = geoseg_run(scene, work / "geoseg", "--precision", precision)
    mo_scene = (mo_before + model_only_scene()) / 2
    inproc = report["timings_s"]["total"]
    # (c) the plain script, fp32 (as written by hand), and geoseg at fp32 for a like-for-like line
    plain_out = work / "plain.gpkg"
    plain_wall, plain_rss = measured(
        [sys.executable, "-c", PLAIN, str(scene), str(ckpt), str(a.tile), str(a.overlap), str(plain_out)]
    )
    wall32, rss32, _ = geoseg_run(scene, work / "geoseg32", "--precision", "fp32")
    mo32 = model_only(ckpt, a.tile, "fp32", 12 * cores, cores) / recompute

    # seam quality: agreement with a single whole-scene forward pass (fp32) of a 1024² crop
    from geoseg.predict.window import predict_window

    crop = 1024
    with rasterio.open(scene) as ds:
        image = ds.read(window=((0, crop), (0, crop))).astype(np.float32)
    whole = predict_window(ckpt, image, pad=a.overlap // 2, precision="fp32")
    with rasterio.open(work / "geoseg32" / f"{scene.stem}.classes.tif") as ds:
        ours = ds.read(1, window=((0, crop), (0, crop)))
    plain = np.load(str(plain_out) + ".npy")[:crop, :crop]
    # exact polygons for the like-for-like agreement: cleaning changes the raster
    wall_exact, _, _ = geoseg_run(
        scene, work / "geoseg32x", "--precision", "fp32", "--min-area", "0", "--simplify", "0"
    )
    with rasterio.open(work / "geoseg32x" / f"{scene.stem}.classes.tif") as ds:
        ours_exact = ds.read(1, window=((0, crop), (0, crop)))

    from geoseg.predict.checkpoint import read_spec

    spec = read_spec(ckpt)
    weights = f"{spec.arch}/{spec.encoder} " + (f"trained ({ckpt.name})" if a.model else "(untrained, seeded)")
    print(
        f"\n# geoseg at scale: {weights}, {a.size}² synthetic scene, "
        f"tile {a.tile}, overlap {a.overlap}, CPU with {cores} cores, precision {precision}"
    )
    print(f"tile grid: {tiles} tiles, {recompute:.2f} model pixels per scene pixel\n")
    print("(a) end to end vs model-only (scene Mpx/s, same tile, batch 1 per pass, same precision)")
    print("| | scene Mpx/s | ratio |")
    print("|---|---|---|")
    print(
        f"| model-only forward ({precision}, {cores} passes x 1 thread; before {mo_before:.3f}) | {mo_scene:.3f} | 1 |"
    )
    print(
        f"| `geoseg run`, whole command (incl. interpreter + torch start-up) | {scene_mpx / wall:.3f} | "
        f"{scene_mpx / wall / mo_scene:.2f} |"
    )
    print(
        f"| `geoseg run`, in-process `run()` time from run.json | {scene_mpx / inproc:.3f} | "
        f"{scene_mpx / inproc / mo_scene:.2f} |"
    )
    print("run.json timings (s):", report["timings_s"])
    print("\n(c) geoseg vs the plain script (same scene, same weights)")
    print("| | wall s | scene Mpx/s | vs plain | peak RSS GiB | RSS vs plain |")
    print("|---|---|---|---|---|---|")
    print(
        f"| plain script (fp32, batch 1, whole read) | {plain_wall:.1f} | {scene_mpx / plain_wall:.3f} | 1 | "
        f"{plain_rss:.2f} | 1 |"
    )
    for name, w_, r_ in ((f"geoseg run ({precision})", wall, rss), ("geoseg run (fp32)", wall32, rss32)):
        print(
            f"| {name} | {w_:.1f} | {scene_mpx / w_:.3f} | {plain_wall / w_:.2f}x | {r_:.2f} | {r_ / plain_rss:.2f} |"
        )
    print(f"model-only fp32: {mo32:.3f} scene Mpx/s")
    # the reference mirrors the crop at its far edges where the runs saw real pixels: compare inside
    inner = (slice(0, crop - 128), slice(0, crop - 128))

    def agree(x: np.ndarray) -> str:
        return f"{float((x[inner] == whole[inner]).mean()):.4%}"

    print(
        f"seam quality (agreement with one whole-image fp32 pass over a {crop}² corner of the scene): "
        f"plain {agree(plain)}, geoseg exact {agree(ours_exact)} (default cleaning changes the map on "
        f"purpose: {agree(ours)}); geoseg exact run {wall_exact:.1f} s"
    )

    if not a.skip_big:
        k = max(1, a.big // a.size)
        big = work / f"scene{a.size * k}.tif"
        if not big.exists():
            from geoseg.synthetic import write_copies

            write_copies(scene, big, k, k)
        mo_big = model_only_scene()
        wall_big, rss_big, rep_big = geoseg_run(big, work / "big", "--precision", precision)
        mo_big = (mo_big + model_only_scene()) / 2
        big_mpx = (a.size * k) ** 2 / 1e6
        print(f"\n(a) on the {a.size * k}² scene (model-only measured just before and after the run)")
        print("| | scene Mpx/s | ratio |")
        print("|---|---|---|")
        print(f"| model-only forward ({precision}) | {mo_big:.3f} | 1 |")
        print(f"| `geoseg run`, whole command | {big_mpx / wall_big:.3f} | {big_mpx / wall_big / mo_big:.2f} |")
        inproc_big = rep_big["timings_s"]["total"]
        print(f"| `geoseg run`, in-process | {big_mpx / inproc_big:.3f} | {big_mpx / inproc_big / mo_big:.2f} |")
        print(f"\n(b) memory vs scene size ({precision})")
        print("| scene | area | wall s | peak RSS GiB | RSS ratio |")
        print("|---|---|---|---|---|")
        print(f"| {a.size}² | 1 | {wall:.1f} | {rss:.2f} | 1 |")
        print(f"| {a.size * k}² | {k * k} | {wall_big:.1f} | {rss_big:.2f} | {rss_big / rss:.2f} |")
        print(f"plain script at {a.size}²: {plain_rss:.2f} GiB; geoseg/plain {rss / plain_rss:.2f}")
        print("big run timings (s):", rep_big["timings_s"], "polygons", rep_big["polygons"])


if __name__ == "__main__":
    main()
