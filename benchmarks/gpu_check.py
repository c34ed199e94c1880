"""On a CUDA machine: model-only vs whole-command throughput with torch AMP and ONNX Runtime's CUDA provider.

    python benchmarks/gpu_check.py [--size 16384] [--tile 512] [--batch 8] [--model CKPT] [--out gpu.json]
    python benchmarks/gpu_check.py --dry-run        # tiny and on the CPU: checks the code paths anywhere

``benchmarks/gpu.sh`` prepares the environment and runs this; see there for what
it expects. For a U-Net ResNet-34 (``--model``, else seeded untrained weights)
at 512² tiles, on a seeded synthetic scene (a 2048² town, copied to ``--size``):

- torch, bf16 autocast + channels_last (``--precision auto`` on CUDA):
  model-only through geoseg's predictor (uint8 tiles in, float32 probabilities
  back: what a block task does), the bare forward pass on tensors already on
  the GPU, and ``geoseg run --engine torch --device cuda`` as a subprocess;
- ONNX Runtime's CUDA provider, fp32 graph (skipped, with the reason, where
  onnxruntime has no working CUDA provider): model-only and
  ``geoseg run --engine onnx --device cuda``;
- during each whole command, ``nvidia-smi`` samples GPU utilisation and memory
  every 200 ms; the run's peak RSS (process tree), seconds to its first
  finished block, and its stage timings (``run.json``) are recorded;
- ``pytest tests/predict/test_gpu.py``.

Untrained weights give a speckled map whose vector stage is several times
slower than a real map's: the ``segment`` stage's rate (from ``run.json``) is the
figure to compare with model-only; pass a trained ``--model`` for the whole command.

One JSON is written (``--out``), rewritten after every section, so a run cut
short still leaves what it measured. Sections that would start after
``--budget`` seconds are skipped and listed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from engines import log_events, measure, scene_tiles  # benchmarks/engines.py, beside this script

ROOT = Path(__file__).resolve().parent.parent


class GpuSampler:
    """``nvidia-smi`` sampling GPU utilisation and memory every `ms` while the block runs (nothing without it)."""

    def __init__(self, index: int = 0, ms: int = 200) -> None:
        self.cmd = [
            "nvidia-smi",
            f"--id={index}",
            "--query-gpu=utilization.gpu,memory.used",
            "--format=csv,noheader,nounits",
            "-lms",
            str(ms),
        ]
        self.ms = ms
        self.proc: subprocess.Popen[bytes] | None = None
        self.samples: list[tuple[int, int]] = []

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            self._out = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(self.cmd, stdout=self._out, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        self.proc.wait(10)
        self._out.seek(0)
        for line in self._out.read().decode("ascii", "replace").splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                self.samples.append((int(parts[0]), int(parts[1])))
        self._out.close()

    def summary(self) -> dict[str, Any]:
        if self.proc is None:
            return {"note": "nvidia-smi not found: no GPU utilisation sampled"}
        if not self.samples:
            return {"note": "nvidia-smi gave no samples"}
        util = np.array([u for u, _ in self.samples])
        busy = np.nonzero(util > 0)[0]
        window = util[busy[0] : busy[-1] + 1] if len(busy) else util[:0]
        return {
            "samples": len(util),
            "interval_ms": self.ms,
            "util_mean_pct": float(util.mean()),
            "util_p50_pct": float(np.percentile(util, 50)),
            "util_p90_pct": float(np.percentile(util, 90)),
            "util_max_pct": int(util.max()),
            # from the first to the last sample with the GPU busy: start-up and the CPU-only tail left out
            "util_mean_active_pct": float(window.mean()) if len(window) else 0.0,
            "active_s": len(window) * self.ms / 1000,
            "memory_max_mib": max(m for _, m in self.samples),
            "series": [list(s) for s in self.samples],
        }


class Report:
    """The one JSON, written again after every section."""

    def __init__(self, path: Path, budget: float) -> None:
        self.path, self.budget, self.t0 = path, budget, time.perf_counter()
        self.data: dict[str, Any] = {"skipped_for_time": []}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def allows(self, section: str, needs: float) -> bool:
        """Whether `section` (about `needs` seconds) still fits in the budget; if not, it is listed as skipped."""
        if self.elapsed() + needs <= self.budget:
            return True
        self.data["skipped_for_time"].append(section)
        self.save()
        return False

    def save(self) -> None:
        self.data["elapsed_s"] = round(self.elapsed(), 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".part")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)


def environment(device: str) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "onnxruntime": ort.__version__,
        "onnxruntime_file": ort.__file__,
        "onnxruntime_providers": ort.get_available_providers(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(torch.device(device))
        env |= {
            "gpu": p.name,
            "gpu_memory_gib": round(p.total_memory / 2**30, 1),
            "capability": f"{p.major}.{p.minor}",
            "cudnn": torch.backends.cudnn.version(),
            "bf16": torch.cuda.is_bf16_supported(),
        }
    if shutil.which("nvidia-smi"):
        q = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        )
        env["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
    return env


def predictor_rate(pred: Any, tiles: list[np.ndarray], batch: int, batches: int) -> dict[str, Any]:
    """Tile Mpx/s of geoseg's predictor, `batches` batches of `batch` tiles after two warm-up batches."""
    x = np.stack([tiles[i % len(tiles)] for i in range(batch)])
    for _ in range(2):
        pred.predict(x)
    t0 = time.perf_counter()
    for _ in range(batches):
        pred.predict(x)
    s = time.perf_counter() - t0
    px = batches * x.shape[0] * x.shape[-1] * x.shape[-2]
    return {"tile_mpx_s": px / 1e6 / s, "batch": batch, "batches": batches, "seconds": s}


def forward_rate(pred: Any, tile: int, batch: int, batches: int) -> dict[str, Any]:
    """Tile Mpx/s of the bare forward pass on a tensor already on the device (no copies, no softmax)."""
    import torch

    dev = pred.device
    x = torch.randn(batch, pred.spec.in_channels, tile, tile, device=dev).contiguous(memory_format=torch.channels_last)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    with torch.inference_mode(), pred._autocast():
        for _ in range(3):
            pred.model(x)
        sync()
        t0 = time.perf_counter()
        for _ in range(batches):
            pred.model(x)
        sync()
        s = time.perf_counter() - t0
    return {"tile_mpx_s": batches * batch * tile * tile / 1e6 / s, "batch": batch, "batches": batches, "seconds": s}


def end_to_end(
    scene: Path, ckpt: Path, out: Path, extra: list[str], tile: int, overlap: int, limit: float
) -> dict[str, Any]:
    """``geoseg run`` as a subprocess, with nvidia-smi sampling: rates, peak RSS, first block, GPU utilisation."""
    cmd = [sys.executable, "-m", "geoseg", "run", str(scene), "--model", str(ckpt), "-o", str(out)]
    cmd += ["--tile", str(tile), "--overlap", str(overlap), "--overwrite", "-q", "--log-json", *extra]
    with GpuSampler() as gpu:
        try:
            m = measure(
                ["timeout", str(int(limit)), *cmd] if shutil.which("timeout") else cmd, out / f"{scene.stem}.zarr"
            )
        except subprocess.CalledProcessError as exc:
            return {"command": cmd[2:], "error": f"exit {exc.returncode} (124: stopped after {int(limit)} s)"}
    report = json.loads((out / f"{scene.stem}.run.json").read_text())
    m |= log_events(m.pop("stderr"), m.pop("started"))
    mpx = report["scene"]["width"] * report["scene"]["height"] / 1e6
    t = report["timings_s"]
    return m | {
        "command": cmd[2:],
        "scene_mpx": mpx,
        "mpx_s": mpx / m["wall_s"],
        "in_process_mpx_s": mpx / t["total"],
        "segment_mpx_s": mpx / t["segment"] if t.get("segment") else None,
        "recompute": report["grid"]["tiles_run"] * tile * tile / 1e6 / mpx,
        "engine": report["model"]["engine"],
        "precision": report["grid"]["precision"],
        "batch": report["parameters"].get("batch"),
        "block": report["grid"]["block"],
        "timings_s": t,
        "polygons": report["polygons"],
        "gpu": gpu.summary(),
    }


def ratios(section: dict[str, Any]) -> None:
    """Whole command over model-only, both in scene pixels (model-only divided by the tile pixels per scene pixel)."""
    e2e, mo = section.get("end_to_end", {}), section.get("model_only", {})
    if "mpx_s" in e2e and "tile_mpx_s" in mo:
        scene_rate = mo["tile_mpx_s"] / e2e["recompute"]
        section["ratios"] = {
            "model_only_scene_mpx_s": scene_rate,
            "whole_command_vs_model_only": e2e["mpx_s"] / scene_rate,
            "in_process_vs_model_only": e2e["in_process_mpx_s"] / scene_rate,
            "segment_stage_vs_model_only": (e2e["segment_mpx_s"] or 0) / scene_rate,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=16384, help="scene side in px (copies of a 2048² town)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=40, help="timed batches for each model-only figure")
    ap.add_argument("--model", type=Path, default=None, help="a trained U-Net checkpoint (default: seeded, untrained)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu.json")
    ap.add_argument("--budget", type=float, default=400, help="seconds; later sections are skipped past it")
    ap.add_argument("--setup", type=Path, default=None, help="JSON list of notes from the setup (gpu.sh)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, to check the code paths")
    a = ap.parse_args()
    base = 2048
    if a.dry_run:
        a.device, a.size, a.tile, a.batch, a.batches, base = "cpu", 1024, 256, 2, 2, 512

    rep = Report(a.out.resolve(), a.budget)
    rep.data["setup"] = json.loads(a.setup.read_text()) if a.setup and a.setup.is_file() else []
    work = (a.workdir or Path(tempfile.mkdtemp(prefix="geoseg-gpu-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["GEOSEG_HOME"] = str(work / "home")  # the engine cache, for this process and every geoseg run

    from geoseg._files import sha256_file
    from geoseg.predict.checkpoint import init_checkpoint, read_spec
    from geoseg.predict.runtime import cached_graph
    from geoseg.synthetic import SceneSpec, write_copies, write_scene

    rep.data["env"] = environment(a.device)
    if a.device.startswith("cuda") and not rep.data["env"]["cuda_available"]:
        rep.data["error"] = f"torch {rep.data['env']['torch']} sees no CUDA device; --dry-run checks this on a CPU"
        rep.save()
        raise SystemExit(rep.data["error"])
    k = max(1, a.size // base)
    rep.data["config"] = {
        "device": a.device,
        "scene": f"{base * k}² ({k}x{k} copies of a {base}² synthetic town, seed 11)",
        "tile": a.tile,
        "overlap": a.overlap,
        "batch": a.batch,
        "dry_run": a.dry_run,
    }
    rep.save()

    t0 = time.perf_counter()
    town = work / f"town{base}.tif"
    write_scene(SceneSpec(width=base, height=base, pixel_size=0.1, seed=11), town)
    scene = write_copies(town, work / f"scene{base * k}.tif", k, k) if k > 1 else town
    if a.model:
        ckpt = a.model.resolve()
    else:
        ckpt = work / "unet_resnet34.pt"
        init_checkpoint(ckpt, arch="unet", encoder="resnet34", in_channels=3, seed=0, tile_size=a.tile)
    spec = read_spec(ckpt)
    tiles, _ = scene_tiles(town, spec, 16, a.tile)
    rep.data["config"] |= {"model": f"{spec.arch}/{spec.encoder}", "trained": bool(a.model)}
    rep.data["config"]["prepare_s"] = round(time.perf_counter() - t0, 1)
    rep.save()
    e2e_limit = 150.0 if not a.dry_run else 300.0

    # torch, AMP
    from geoseg.predict.engine import Predictor

    section: dict[str, Any] = {}
    rep.data["torch"] = section
    if rep.allows("torch model-only", 30):
        pred = Predictor(ckpt, device=a.device, batch_size=a.batch, threads=None if a.device != "cpu" else 1)
        section["precision"] = pred.precision
        section["model_only"] = predictor_rate(pred, tiles, a.batch, a.batches)
        section["forward_only"] = forward_rate(pred, a.tile, a.batch, a.batches)
        del pred
        rep.save()
    if rep.allows("torch end-to-end", 90):
        section["end_to_end"] = end_to_end(
            scene, ckpt, work / "torch", ["--engine", "torch", "--device", a.device], a.tile, a.overlap, e2e_limit
        )
        ratios(section)
        rep.save()

    # ONNX Runtime, CUDA provider (the CPU one in a dry run)
    import onnxruntime as ort

    section = {}
    rep.data["onnxruntime"] = section
    wanted = "CPUExecutionProvider" if a.device == "cpu" else "CUDAExecutionProvider"
    if wanted not in ort.get_available_providers():
        section["skipped"] = (
            f"onnxruntime {ort.__version__} ({ort.__file__}) has no {wanted} "
            f"(providers: {', '.join(ort.get_available_providers())}); install onnxruntime-gpu"
        )
    elif rep.allows("onnxruntime export", 60):
        from geoseg.errors import ConfigError
        from geoseg.predict.onnx_engine import OnnxPredictor
        from geoseg.predict.onnx_export import export_onnx

        graph = cached_graph(sha256_file(ckpt), "fp32")  # where `geoseg run --engine onnx` looks for it
        graph.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        export_onnx(ckpt, graph)
        section["export_s"] = round(time.perf_counter() - t0, 1)
        try:
            opred = OnnxPredictor(graph, device=a.device, batch_size=a.batch, threads=1 if a.device == "cpu" else None)
        except ConfigError as exc:  # the CUDA provider is listed but does not start (libraries missing)
            section["skipped"] = str(exc)
        else:
            section["providers"] = opred.session.get_providers()
            section["precision"] = opred.precision
            if rep.allows("onnxruntime model-only", 30):
                section["model_only"] = predictor_rate(opred, tiles, a.batch, a.batches)
            del opred
            rep.save()
            if rep.allows("onnxruntime end-to-end", 90):
                section["end_to_end"] = end_to_end(
                    scene, ckpt, work / "onnx", ["--engine", "onnx", "--device", a.device], a.tile, a.overlap, e2e_limit
                )
                ratios(section)
    rep.save()

    # the GPU tests
    if rep.allows("pytest tests/predict/test_gpu.py", 45):
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "pytest", "tests/predict/test_gpu.py", "-q", "-rs", "-p", "no:cacheprovider"]
        try:
            p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, timeout=240)
            rc, output = p.returncode, p.stdout + p.stderr
        except subprocess.TimeoutExpired as exc:
            rc, output = 124, f"{exc.output or ''}\nstopped after 240 s"
        lines = str(output).strip().splitlines()
        rep.data["pytest"] = {
            "rc": rc,
            "summary": lines[-1] if lines else "",
            "tail": "\n".join(lines[-40:]),
            "seconds": round(time.perf_counter() - t0, 1),
        }
    rep.save()
    summarise(rep.data)
    print(f"wrote {rep.path}")


def summarise(d: dict[str, Any]) -> None:
    """A few lines on stdout: the figures that matter."""
    env = d.get("env", {})
    print(f"# {env.get('gpu', env.get('device'))}, torch {env.get('torch')}, onnxruntime {env.get('onnxruntime')}")
    for name in ("torch", "onnxruntime"):
        s = d.get(name, {})
        if "skipped" in s:
            print(f"{name}: skipped: {s['skipped']}")
            continue
        mo, fw, e2e = s.get("model_only", {}), s.get("forward_only", {}), s.get("end_to_end", {})
        parts = [f"{name} {s.get('precision', '')}:"]
        if mo:
            parts.append(f"model-only {mo['tile_mpx_s']:.1f} tile Mpx/s")
        if fw:
            parts.append(f"bare forward {fw['tile_mpx_s']:.1f}")
        if "mpx_s" in e2e:
            gpu = e2e["gpu"]
            util = (
                f"GPU util mean {gpu['util_mean_pct']:.0f} % (busy window {gpu['util_mean_active_pct']:.0f} %), "
                f"{gpu['memory_max_mib']} MiB"
                if "util_mean_pct" in gpu
                else gpu.get("note", "")
            )
            parts.append(
                f"geoseg run {e2e['mpx_s']:.1f} scene Mpx/s (segment stage {e2e['segment_mpx_s'] or 0:.1f}), "
                f"peak RSS {e2e['peak_rss_gib']:.2f} GiB, first block {e2e['first_block_s'] or 0:.1f} s, {util}"
            )
        elif "error" in e2e:
            parts.append(f"geoseg run failed: {e2e['error']}")
        if "ratios" in s:
            r = s["ratios"]
            parts.append(
                f"whole command / model-only {r['whole_command_vs_model_only']:.2f} "
                f"(segment stage {r['segment_stage_vs_model_only']:.2f})"
            )
        print(" ".join(parts))
    if "pytest" in d:
        print(f"pytest tests/predict/test_gpu.py: {d['pytest']['summary']} (rc {d['pytest']['rc']})")
    if d.get("skipped_for_time"):
        print(f"skipped for time: {', '.join(d['skipped_for_time'])}")


if __name__ == "__main__":
    main()
