"""Engines side by side: torch fp32 and bf16, ONNX Runtime fp32 and int8, model-only and as whole commands.

    python benchmarks/engines.py [--model CKPT | --arch unet --encoder resnet34] [--scene PATH]
                                 [--size 4096] [--big 16384] [--skip-big] [--model-only] [--tile 512] [--overlap 64]
                                 [--tiles 16] [--rounds 3] [--calibrate PATH ...] [--json PATH] [--quick]

Everything runs in one invocation, on the same scene and weights (``--model``, a
trained checkpoint, or untrained seeded weights of ``--arch``/``--encoder``), so
the ratios compare like with like. Untrained weights give near-uniform class
scores, so their argmax agreement between precisions says little: pass a trained
model for agreement figures that mean something.

(a) model-only throughput in megapixels of tile pixels per second, in geoseg's
    CPU layout (one intra-op thread per forward pass, one pass per core at
    once), for torch fp32 (channels_last, as geoseg runs it), torch bf16 autocast
    + channels_last, ONNX Runtime fp32 and ONNX Runtime int8, and each one's
    argmax agreement with torch fp32 on held-out tiles (valid pixels only); the
    engines take turns over ``--rounds`` rounds and each one's median counts. The
    tiles come from the scene that (b) maps: by default a seeded synthetic town
    (:mod:`geoseg.synthetic`), else ``--scene``. The int8 graph is calibrated
    (:func:`geoseg.predict.onnx_int8.quantize_int8`) on other imagery: a second
    synthetic scene of another seed by default; with ``--scene``, the top half of
    it (the held-out tiles then come from the bottom half) unless ``--calibrate``
    names imagery.
(b) whole-command ``geoseg run`` (a subprocess): scene Mpx/s, peak RSS summed
    over the process tree (psutil, every 50 ms), and seconds from process start
    to the first finished block, at ``--size`` and ``--big`` (a mosaic of copies
    of the first scene), for ``--engine torch``, ``--engine onnx`` (the int8
    graph in the engine cache), ``--engine onnx --precision fp32``, and the plain
    script of ``benchmarks/scale.py`` (at ``--size`` only: it holds the scene
    whole). ``--log-json`` reports the engine chosen and when the model was
    loaded, but no per-block progress, so the first finished block is found by
    polling the working store's completion markers (``<stem>.zarr/done/c/Y/X``,
    one file per finished block, see :mod:`geoseg.store`); the time is the
    marker file's modification time minus the process's start.
(c) which engine ``--engine auto`` picks on this CPU and why, with and without
    the int8 graph in the cache, and the CPU's model and relevant flags.

The engine cache lives in a temporary ``GEOSEG_HOME``, so no user's models or
cached graphs are read or written. ``--quick`` runs everything at small sizes
(tile 256, 1024² and 2048² scenes, 4 tiles per engine) to check the script.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from scale import PLAIN  # benchmarks/scale.py, beside this script

#: CPU flags that decide which engine and precision are fast.
FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# -- tiles ------------------------------------------------------------------------------------


def scene_tiles(
    path: Path, spec: Any, n: int, size: int, rows: tuple[float, float] = (0.0, 1.0)
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`n` tiles of `size` px spread evenly over the scene's row band `rows` (fractions), and their valid masks.

    The tiles sit on a grid of whole tiles inside the band; a tile of which less
    than half is valid is skipped. Fewer than `n` come back where the band holds
    fewer valid tiles.
    """
    from geoseg.raster import open_scene, read_window, select_bands

    info = open_scene(path)
    bands = select_bands(info, None, spec.in_channels, spec.bands)
    r0, r1 = int(rows[0] * info.height), int(rows[1] * info.height)
    ys = list(range(r0, max(r0, r1 - size) + 1, size))
    xs = list(range(0, max(0, info.width - size) + 1, size))
    windows = [(y, x) for y in ys for x in xs]
    order = np.unique(np.linspace(0, len(windows) - 1, min(n, len(windows))).astype(int))
    spread = set(order.tolist())
    rest = [i for i in range(len(windows)) if i not in spread]  # reserve, for tiles that are mostly nodata
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for i in [*order.tolist(), *rest]:
        data, valid = read_window(info.path, *windows[i], size, size, bands, fill=tuple(spec.mean))
        if valid.mean() < 0.5:
            continue
        images.append(np.asarray(data))
        masks.append(np.asarray(valid, bool))
        if len(images) == n:
            break
    if not images:
        raise SystemExit(f"{path}: no tile of {size} px with valid pixels in rows {r0}..{r1}")
    return images, masks


def write_crop(src: Path, dst: Path, rows: tuple[float, float], limit: int = 4096) -> Path:
    """The row band `rows` (fractions) of `src`, at most `limit` px on a side, as a GeoTIFF written block by block."""
    import rasterio
    from rasterio.enums import MaskFlags
    from rasterio.windows import Window

    with rasterio.open(src) as ds:
        r0 = int(rows[0] * ds.height)
        h = min(int(rows[1] * ds.height) - r0, limit)
        w = min(ds.width, limit)
        profile = ds.profile | {
            "driver": "GTiff",
            "width": w,
            "height": h,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "compress": "deflate",
            "transform": ds.window_transform(Window(0, r0, w, h)),
        }
        with rasterio.open(dst, "w", **profile) as out:
            out.descriptions = ds.descriptions
            for y in range(0, h, 1024):
                win = Window(0, y, w, min(1024, h - y))
                out.write(ds.read(window=Window(0, r0 + y, w, win.height)), window=win)
                if ds.nodata is None and MaskFlags.per_dataset in ds.mask_flag_enums[0]:
                    out.write_mask(ds.dataset_mask(window=Window(0, r0 + y, w, win.height)), window=win)
    return dst


# -- (a) model-only ---------------------------------------------------------------------------


def throughput(predictor: Any, tiles: Sequence[np.ndarray], workers: int) -> tuple[float, list[np.ndarray | None]]:
    """Tile Mpx/s of `workers` threads, each running its share of `tiles` one by one, and each tile's argmax.

    Every thread warms up on its first tile before the clock starts.
    """
    classes: list[np.ndarray | None] = [None] * len(tiles)
    start = threading.Barrier(workers + 1)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            mine = list(range(k, len(tiles), workers))
            predictor.predict(tiles[mine[0] if mine else 0][None])
            start.wait()
            for i in mine:
                classes[i] = predictor.predict(tiles[i][None])[0].argmax(0).astype(np.uint8)
        except BaseException as exc:  # reported by the caller, not lost in a thread
            errors.append(exc)
            start.abort()

    pool = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
    for t in pool:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a thread failed: its error is raised below
        start.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise errors[0]
    pixels = sum(t.shape[-1] * t.shape[-2] for t in tiles)
    return pixels / 1e6 / seconds, classes


def agreement(a: Sequence[np.ndarray | None], b: Sequence[np.ndarray | None], masks: Sequence[np.ndarray]) -> float:
    """Fraction of valid pixels whose class is the same in `a` and `b`."""
    same = total = 0
    for x, y, m in zip(a, b, masks, strict=True):
        assert x is not None and y is not None
        same += int((x == y)[m].sum())
        total += int(m.sum())
    return same / max(total, 1)


# -- (b) whole commands -----------------------------------------------------------------------


def measure(cmd: list[str], store: Path | None = None) -> dict[str, Any]:
    """Run `cmd` alone: wall seconds, peak RSS (GiB) of its whole process tree, and its first finished block.

    The RSS is sampled every 50 ms and summed over the command and every
    process it starts. With `store` (the run's ``<stem>.zarr`` folder), the
    first completion marker under ``done/c`` gives the seconds from the
    process's start to its first finished block. The command's stderr is kept
    (``--log-json`` lines).
    """
    import psutil

    with tempfile.TemporaryFile(mode="w+b") as err:
        started = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        top = psutil.Process(proc.pid)
        peak = 0
        first: float | None = None
        while proc.poll() is None:
            try:
                rss = top.memory_info().rss + sum(c.memory_info().rss for c in top.children(recursive=True))
                peak = max(peak, rss)
            except psutil.Error:  # a worker ended between listing and reading it
                pass
            if store is not None and first is None:
                first = _first_marker(store)
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if proc.returncode:
        sys.stderr.write(stderr[-4000:])
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return {
        "wall_s": wall,
        "peak_rss_gib": peak / 2**30,
        "first_block_s": None if first is None else first - started,
        "stderr": stderr,
        "started": started,
    }


def _first_marker(store: Path) -> float | None:
    """The modification time of the earliest block-completion marker in a working store, if any."""
    try:
        times = [f.stat().st_mtime for f in (store / "done" / "c").glob("*/*") if f.is_file()]
    except OSError:  # the store is being created or removed
        return None
    return min(times) if times else None


def log_events(stderr: str, started: float) -> dict[str, Any]:
    """The engine line and the model-loaded line of a ``--log-json`` stderr, with seconds since `started`."""
    out: dict[str, Any] = {}
    for line in stderr.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        msg = str(rec.get("message", ""))
        at = datetime.fromisoformat(rec["time"]).timestamp() - started if "time" in rec else None
        if msg.startswith("engine: ") and "engine" not in out:
            out["engine"] = msg.removeprefix("engine: ")
            out["engine_s"] = at
        elif msg.startswith("loaded ") and "model_loaded_s" not in out:
            out["model_loaded"] = msg.removeprefix("loaded ")
            out["model_loaded_s"] = at
    return out


def classes_agreement(a: Path, b: Path) -> float:
    """Fraction of pixels, valid in both, whose class is the same in two class rasters (read block by block)."""
    import rasterio
    from rasterio.windows import Window

    same = total = 0
    with rasterio.open(a) as da, rasterio.open(b) as db:
        for y in range(0, da.height, 2048):
            win = Window(0, y, da.width, min(2048, da.height - y))
            x, z = da.read(1, window=win), db.read(1, window=win)
            valid = (x != 255) & (z != 255)
            same += int((x == z)[valid].sum())
            total += int(valid.sum())
    return same / max(total, 1)


# -- main ---------------------------------------------------------------------------------------


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "–" if x is None else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="a trained checkpoint (default: untrained, seeded)")
    ap.add_argument("--arch", default="unet")
    ap.add_argument("--encoder", default="resnet34")
    ap.add_argument("--scene", type=Path, default=None, help="a scene to map (default: a synthetic one of --size)")
    ap.add_argument("--calibrate", action="append", default=None, help="int8 calibration imagery (repeatable)")
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--big", type=int, default=16384)
    ap.add_argument("--skip-big", action="store_true", help="leave out the big scene (many minutes on 2 cores)")
    ap.add_argument("--model-only", action="store_true", help="only (a) and (c): no whole commands")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--tiles", type=int, default=None, help="held-out tiles per engine (default: 8 per core)")
    ap.add_argument("--rounds", type=int, default=3, help="model-only rounds over all engines; the median counts")
    ap.add_argument("--calib-tiles", type=int, default=16, help="tiles read for int8: half calibrate, half check")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--workdir", type=Path, default=None, help="keep scenes and outputs here (default: a temp dir)")
    ap.add_argument("--quick", action="store_true", help="small sizes, to check that the script works")
    a = ap.parse_args()
    if a.quick:
        a.size, a.big, a.tile, a.calib_tiles, a.rounds = 1024, 2048, 256, 8, 1
        a.tiles = a.tiles or 4

    work = (a.workdir or Path(tempfile.mkdtemp(prefix="geoseg-engines-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["GEOSEG_HOME"] = str(work / "home")  # the engine cache; inherited by every `geoseg run`

    from scale import scene_and_model

    from geoseg import __version__
    from geoseg._files import sha256_file
    from geoseg.predict.checkpoint import init_checkpoint
    from geoseg.predict.engine import Predictor, cpu_has_bf16, resolve_device, resolve_precision
    from geoseg.predict.onnx_engine import OnnxPredictor
    from geoseg.predict.onnx_export import export_onnx
    from geoseg.predict.onnx_int8 import quantize_int8
    from geoseg.predict.runtime import cached_graph, choose_engine, cpu_flags, read_spec
    from geoseg.synthetic import SceneSpec, write_scene

    cores = os.cpu_count() or 1
    n_tiles = a.tiles or 8 * cores

    def say(msg: str) -> None:  # progress on stderr, results on stdout
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    # the scene, the weights, and the calibration imagery (never the held-out tiles)
    if a.scene is not None:
        scene = a.scene.resolve()
        ckpt = a.model.resolve() if a.model else work / f"{a.arch}_{a.encoder}.pt"
        if not a.model:
            init_checkpoint(ckpt, arch=a.arch, encoder=a.encoder, in_channels=3, seed=0, tile_size=a.tile)
    else:
        _, scene, ckpt = scene_and_model(work, a.size, a.arch, a.encoder, a.tile, "", a.model)
    spec = read_spec(ckpt)
    held_rows = (0.0, 1.0)
    if a.calibrate:
        calibrate = list(a.calibrate)
        calib_note = "--calibrate " + " ".join(calibrate)
    elif a.scene is not None:
        calibrate = [str(write_crop(scene, work / "calibration.tif", (0.0, 0.5)))]
        held_rows = (0.5, 1.0)
        calib_note = f"the top half of {scene.name} (held-out tiles from the bottom half)"
    else:
        side = spec.tile_size * math.ceil(math.sqrt(a.calib_tiles))
        calib_scene = work / f"calibration{side}.tif"
        if not calib_scene.exists():
            write_scene(SceneSpec(width=side, height=side, pixel_size=0.1, seed=12), calib_scene)
        calibrate = [str(calib_scene)]
        calib_note = f"a second synthetic scene ({side}², seed 12; the mapped scene is seed 11)"

    # (c) before the int8 graph exists, then the graphs into the engine cache
    sha = sha256_file(ckpt)
    auto_before = choose_engine(ckpt, engine="auto", device="cpu", precision="auto")
    fp32_graph, int8_graph = cached_graph(sha, "fp32"), cached_graph(sha, "int8")
    fp32_graph.parent.mkdir(parents=True, exist_ok=True)
    say(f"exporting {ckpt.name} to ONNX")
    t0 = time.perf_counter()
    export_onnx(ckpt, fp32_graph)
    export_s = time.perf_counter() - t0
    say(f"calibrating int8 on {calib_note}")
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # onnxruntime's calibrators print their settings
        cal = quantize_int8(fp32_graph, int8_graph, calibrate=calibrate, tiles=a.calib_tiles, force=True, progress=say)
    calib_s = time.perf_counter() - t0
    auto_after = choose_engine(ckpt, engine="auto", device="cpu", precision="auto")
    onnx_choice = choose_engine(ckpt, engine="onnx", device="cpu", precision="auto")
    torch_auto = resolve_precision(resolve_device("cpu"), "auto")

    # (a) model-only, on held-out tiles of the mapped scene
    say(f"reading {n_tiles} held-out tiles of {a.tile} px")
    tiles, masks = scene_tiles(scene, spec, n_tiles, a.tile, held_rows)
    engines: list[tuple[str, tuple[str, str], Callable[[], Any]]] = [
        ("torch fp32", ("torch", "fp32"), lambda: Predictor(ckpt, device="cpu", precision="fp32", threads=1)),
        (
            "torch bf16 + channels_last",
            ("torch", "bf16"),
            lambda: Predictor(ckpt, device="cpu", precision="bf16", threads=1),
        ),
        ("ONNX Runtime fp32", ("onnx", "fp32"), lambda: OnnxPredictor(fp32_graph, device="cpu", threads=1)),
        ("ONNX Runtime int8", ("onnx", "int8"), lambda: OnnxPredictor(int8_graph, device="cpu", threads=1)),
    ]
    predictors = [make() for _, _, make in engines]
    rates: list[list[float]] = [[] for _ in engines]
    model_only: list[dict[str, Any]] = []
    reference: list[np.ndarray | None] = []
    for round_ in range(a.rounds):  # engines interleaved, so that a change in the machine's load hits them all
        for i, (name, key, _) in enumerate(engines):
            say(f"model-only, round {round_ + 1}/{a.rounds}: {name}")
            mpx, classes = throughput(predictors[i], tiles, cores)
            rates[i].append(mpx)
            if round_ == 0:
                reference = reference or classes
                agree = agreement(classes, reference, masks)
                model_only.append({"engine": name, "key": key, "agreement_torch_fp32": agree})
    for r, mpx_s in zip(model_only, rates, strict=True):
        r |= {"tile_mpx_s": float(np.median(mpx_s)), "rounds": mpx_s}
    del predictors
    base = model_only[0]["tile_mpx_s"]

    # (b) whole commands
    runs: list[dict[str, Any]] = []
    variants: list[tuple[str, list[str]]] = [
        ("geoseg run --engine torch", ["--engine", "torch"]),
        ("geoseg run --engine onnx (int8 in cache)", ["--engine", "onnx"]),
        ("geoseg run --engine onnx --precision fp32", ["--engine", "onnx", "--precision", "fp32"]),
    ]

    def geoseg_run(path: Path, label: str, extra: list[str], out: Path) -> dict[str, Any]:
        cmd = [sys.executable, "-m", "geoseg", "run", str(path), "--model", str(ckpt), "-o", str(out)]
        cmd += ["--tile", str(a.tile), "--overlap", str(a.overlap), "--overwrite", "-q", "--log-json", *extra]
        say(f"{label} on {path.name}")
        m = measure(cmd, out / f"{path.stem}.zarr")
        report = json.loads((out / f"{path.stem}.run.json").read_text())
        m |= log_events(m.pop("stderr"), m.pop("started"))
        mpx = report["scene"]["width"] * report["scene"]["height"] / 1e6
        recompute = report["grid"]["tiles_run"] * a.tile**2 / 1e6 / mpx
        engine, precision = report["model"]["engine"], report["grid"]["precision"]
        same = next(r for r in model_only if r["key"] == (engine, precision))
        return m | {
            "label": label,
            "scene": path.name,
            "scene_mpx": mpx,
            "mpx_s": mpx / m["wall_s"],
            "recompute": recompute,
            "vs_model_only": mpx / m["wall_s"] / (same["tile_mpx_s"] / recompute),
            "report_engine": engine,
            "report_precision": precision,
            "timings_s": report["timings_s"],
            "polygons": report["polygons"],
            "classes": str(out / f"{path.stem}.classes.tif"),
        }

    sizes: list[tuple[Path, bool]] = [] if a.model_only else [(scene, True)]
    if not a.skip_big and not a.model_only:
        from geoseg.raster import open_scene

        info = open_scene(scene)
        k = max(1, round(a.big / max(info.width, info.height)))
        big = work / f"{scene.stem}_x{k}.tif"
        if not big.exists():
            from geoseg.synthetic import write_copies

            say(f"writing {k}x{k} copies of {scene.name}")
            write_copies(scene, big, k, k)
        sizes.append((big, False))
    for path, plain in sizes:
        first: dict[str, Any] | None = None
        for label, extra in variants:
            r = geoseg_run(path, label, extra, work / "runs" / f"{path.stem}-{extra[1]}-{len(extra)}")
            if first is None:
                first = r
                r["agreement_with_torch_run"] = 1.0
            else:
                r["agreement_with_torch_run"] = classes_agreement(Path(first["classes"]), Path(r["classes"]))
            runs.append(r)
        if plain:
            say(f"plain script on {path.name}")
            out = work / "runs" / "plain.gpkg"
            m = measure([sys.executable, "-c", PLAIN, str(path), str(ckpt), str(a.tile), str(a.overlap), str(out)])
            m.pop("stderr")
            m.pop("started")
            mpx = runs[-1]["scene_mpx"]
            runs.append(
                m
                | {
                    "label": "plain script (fp32, batch 1, whole read)",
                    "scene": path.name,
                    "scene_mpx": mpx,
                    "mpx_s": mpx / m["wall_s"],
                    "vs_model_only": None,
                }
            )

    # -- print ----------------------------------------------------------------------------------
    flags = cpu_flags()
    weights = f"{spec.arch}/{spec.encoder} " + (f"trained ({ckpt.name})" if a.model else "(untrained, seeded)")
    print(f"\n# geoseg engines: {weights}, scene {scene.name}, tile {a.tile}, overlap {a.overlap}")
    print(f"CPU: {cpu_model()}, {cores} cores; flags: {' '.join(f for f in FLAGS if f in flags) or 'none of'}")
    missing = [f for f in FLAGS if f not in flags]
    if missing:
        print(f"  without: {' '.join(missing)}")
    import onnxruntime
    import torch

    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, geoseg {__version__}")
    print(f"torch --precision auto on this CPU: {torch_auto} (native bf16: {cpu_has_bf16()})")
    print("\n(c) --engine auto on this CPU")
    print(f"  without an int8 graph: {auto_before.engine} ({auto_before.reason})")
    print(f"  with the int8 graph:   {auto_after.engine} ({auto_after.reason})")
    print(f"  --engine onnx:         {onnx_choice.engine} {onnx_choice.precision} ({onnx_choice.reason})")
    print(
        f"\nint8 calibration on {calib_note}: {cal.method}, {cal.calibration_tiles} tiles, "
        f"{cal.agreement:.3%} of {cal.heldout_pixels:,} check pixels agree with ONNX fp32 "
        f"({calib_s:.0f} s; fp32 export {export_s:.0f} s)"
    )
    print(
        f"\n(a) model-only, {cores} passes x 1 thread, {len(tiles)} held-out tiles of {a.tile}², median of "
        f"{a.rounds} interleaved rounds (tile Mpx/s; agreement = argmax equal to torch fp32's on valid pixels)"
    )
    print("| engine | tile Mpx/s | vs torch fp32 | vs torch bf16 | agreement |")
    print("|---|---|---|---|---|")
    bf16 = model_only[1]["tile_mpx_s"]
    for r in model_only:
        print(
            f"| {r['engine']} | {r['tile_mpx_s']:.3f} | {r['tile_mpx_s'] / base:.2f}x | "
            f"{r['tile_mpx_s'] / bf16:.2f}x | {r['agreement_torch_fp32']:.4%} |"
        )
    if runs:
        print(
            "\n(b) whole command (subprocess; peak RSS over the process tree; first block = first completion "
            "marker in the working store; vs model-only = scene Mpx/s over the same engine and precision's "
            "model-only Mpx/s divided by the tile pixels run per scene pixel)"
        )
        print(
            "| command | scene | Mpx/s | vs torch run | vs model-only | peak RSS GiB | first block s | "
            "model loaded s | engine (log) | classes = torch run |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        torch_rate: dict[str, float] = {}
        for r in runs:
            torch_rate.setdefault(r["scene"], r["mpx_s"])
            agree = r.get("agreement_with_torch_run")
            print(
                f"| {r['label']} | {r['scene']} ({r['scene_mpx']:.1f} Mpx) | {r['mpx_s']:.3f} | "
                f"{r['mpx_s'] / torch_rate[r['scene']]:.2f}x | {_fmt(r['vs_model_only'], '.2f')} | "
                f"{r['peak_rss_gib']:.2f} | {_fmt(r.get('first_block_s'))} | {_fmt(r.get('model_loaded_s'))} | "
                f"{r.get('engine', '–')} | {'–' if agree is None else f'{agree:.3%}'} |"
            )
        for r in runs:
            if r.get("timings_s"):
                print(f"{r['label']} on {r['scene']}: timings {r['timings_s']}, polygons {r['polygons']}")

    if a.json:
        result = {
            "machine": {
                "cpu": cpu_model(),
                "cores": cores,
                "flags": [f for f in FLAGS if f in flags],
                "torch": torch.__version__,
                "onnxruntime": onnxruntime.__version__,
                "geoseg": __version__,
                "python": platform.python_version(),
            },
            "config": {
                "model": weights,
                "scene": str(scene),
                "tile": a.tile,
                "overlap": a.overlap,
                "size": a.size,
                "big": None if a.skip_big else a.big,
                "held_out_tiles": len(tiles),
                "quick": a.quick,
            },
            "auto": {
                "torch_precision_auto": torch_auto,
                "without_int8": {"engine": auto_before.engine, "reason": auto_before.reason},
                "with_int8": {
                    "engine": auto_after.engine,
                    "precision": auto_after.precision,
                    "reason": auto_after.reason,
                },
                "engine_onnx": {"precision": onnx_choice.precision, "reason": onnx_choice.reason},
            },
            "calibration": json.loads(cal.to_json()) | {"seconds": calib_s, "on": calib_note, "export_s": export_s},
            "model_only": model_only,
            "runs": runs,
            "first_block_method": "mtime of the first <stem>.zarr/done/c/Y/X marker minus the process start",
        }
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
