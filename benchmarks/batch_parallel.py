"""Scenes of a regional job one after another, overlapped here, and as tasks on a local cluster.

    python benchmarks/batch_parallel.py [--scenes 8] [--size 2048] [--model PATH] [--workdir DIR]

Writes `scenes` seeded synthetic scenes of `size` px and maps them as one
``geoseg batch`` job three times, side by side in one run, each into its own
folder and each as a separate process:

a. **sequential**: ``--scheduler threads --scenes-in-flight 1`` (one scene after another);
b. **overlapped**: ``--scheduler threads --scenes-in-flight 2`` (a scene segments while the
   one before it is vectorised and exported);
c. **local:2**: ``--scheduler local:2`` (each scene one task on a cluster of two worker
   processes, one scene per worker).

It prints each wall time, its ratio to (a), and the peak resident memory of the
``geoseg batch`` process itself (the client: sampled with psutil, without the
cluster's or the vector stage's worker processes, which are its children), and
checks that (b) and (c) wrote the same class COGs as (a). Without ``--model`` an
untrained FCN / ResNet-18 checkpoint is used (its map is speckle; the work is the same).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MODES = {
    "sequential": ["--scheduler", "threads", "--scenes-in-flight", "1"],
    "overlapped": ["--scheduler", "threads", "--scenes-in-flight", "2"],
    "local:2": ["--scheduler", "local:2"],
}


def make_scenes(root: Path, n: int, size: int) -> None:
    from geoseg.synthetic import SceneSpec, write_scene

    (root / "scenes").mkdir(parents=True)
    for i in range(n):
        write_scene(SceneSpec(width=size, height=size, pixel_size=0.25, seed=100 + i), root / "scenes" / f"s{i}.tif")


def run(job: Path, args: list[str]) -> tuple[float, int]:
    """Wall seconds and the peak RSS (bytes) of the batch process alone, sampled every 50 ms."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "geoseg", "batch", str(job), "-q", *args])
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        me = psutil.Process(proc.pid)
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                peak = max(peak, me.memory_info().rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    if code:
        raise SystemExit(f"geoseg batch {' '.join(args)} exited with {code}")
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--model", default=None, help="checkpoint or installed model [default: an untrained FCN-R18]")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    import yaml

    with contextlib.ExitStack() as stack:
        root = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="geoseg-batchpar-")))
        root.mkdir(parents=True, exist_ok=True)
        model = args.model
        if model is None:
            from geoseg.predict.checkpoint import init_checkpoint

            model = str(root / "fcn18.pt")
            init_checkpoint(Path(model), arch="fcn", encoder="resnet18", tile_size=256, seed=1)
        if not (root / "scenes").exists():
            make_scenes(root, args.scenes, args.size)
        print(f"{args.scenes} scenes of {args.size}² px, model {model}, in {root}")
        results = {}
        for name, extra in MODES.items():
            out = name.replace(":", "-")
            job = root / f"{out}.yaml"
            job.write_text(yaml.safe_dump({"region": out, "scenes": ["scenes/*.tif"], "model": model, "output": out}))
            results[name] = run(job, extra)
            print(f"  {name:<11} {results[name][0]:7.1f} s", flush=True)
        base = results["sequential"][0]
        print(f"\n{'mode':<12}{'wall s':>8}{'vs (a)':>8}{'client peak RSS':>17}")
        for name, (seconds, peak) in results.items():
            print(f"{name:<12}{seconds:8.1f}{seconds / base:8.2f}{peak / 2**20:13.0f} MiB")
        for name in ("overlapped", "local:2"):
            out = name.replace(":", "-")
            for cog in sorted((root / "sequential" / "scenes").glob("*.classes.tif")):
                same = cog.read_bytes() == (root / out / "scenes" / cog.name).read_bytes()
                if not same:
                    raise SystemExit(f"{name}: {cog.name} differs from the sequential batch's")
        print("class COGs of (b) and (c) are byte-identical to (a)'s")


if __name__ == "__main__":
    main()
