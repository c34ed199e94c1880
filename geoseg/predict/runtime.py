"""Which engine runs a model file, chosen without importing torch.

A ``.onnx`` file runs with ONNX Runtime (:mod:`geoseg.predict.onnx_engine`),
anything else is a geoseg checkpoint run by torch
(:mod:`geoseg.predict.engine`). The pipeline's block tasks and ``prepare``
go through this module, so a run of an ONNX model never imports torch: not
in the main process, not in a worker.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .spec import ModelSpec

__all__ = [
    "EngineChoice",
    "cached_graph",
    "choose_engine",
    "cpu_flags",
    "default_chunk",
    "engine_cache",
    "get_predictor",
    "is_onnx",
    "local_workers",
    "read_spec",
    "release_predictors",
    "visible_gpus",
    "worker_device",
]

log = logging.getLogger(__name__)


def is_onnx(path: str | os.PathLike[str]) -> bool:
    """Whether `path` names an ONNX graph (by its ``.onnx`` suffix)."""
    return Path(path).suffix.lower() == ".onnx"


def read_spec(path: str | os.PathLike[str]) -> ModelSpec:
    """The :class:`~geoseg.predict.spec.ModelSpec` of a checkpoint or a geoseg ONNX file."""
    if is_onnx(path):
        from .onnx_engine import read_onnx_spec

        return read_onnx_spec(path)
    from .checkpoint import read_spec as read_checkpoint_spec

    return read_checkpoint_spec(path)


def get_predictor(
    path: str | os.PathLike[str],
    *,
    device: str = "auto",
    batch_size: int | None = None,
    precision: str = "auto",
    threads: int | None = None,
    compile: bool = False,
) -> Any:
    """The process-wide predictor for a model file: ONNX Runtime for ``.onnx``, else torch.

    Both have the same interface (``batches``, ``predict``, ``stream``,
    ``spec``, ``multiple``, ``batch_size``).
    """
    from .._parallel import undo_small_malloc_thresholds

    undo_small_malloc_thresholds()  # in a Dask worker, before its first tile is allocated
    if is_onnx(path):
        from .onnx_engine import get_onnx_predictor

        return get_onnx_predictor(path, device=device, batch_size=batch_size, precision=precision, threads=threads)
    from .engine import get_predictor as get_torch_predictor

    return get_torch_predictor(
        path, device=device, batch_size=batch_size, precision=precision, threads=threads, compile=compile
    )


def release_predictors() -> None:
    """Drop the models this process holds (weights, ONNX Runtime's buffers), so the vector stage has their memory.

    The next :func:`get_predictor` call loads its model again.
    """
    for name in ("geoseg.predict.onnx_engine", "geoseg.predict.engine"):
        module = sys.modules.get(name)
        if module is not None:
            module._cached.cache_clear()


def visible_gpus() -> int:
    """NVIDIA GPUs this process may use, counted without initialising CUDA (or importing torch).

    ``CUDA_VISIBLE_DEVICES`` when set, else the driver's entries under
    ``/proc/driver/nvidia/gpus`` (Linux). Elsewhere, where the driver cannot
    be asked that way, torch counts them.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if sys.platform.startswith("linux"):
        root = Path("/proc/driver/nvidia/gpus")
        present = len(list(root.iterdir())) if root.is_dir() else 0
        if visible is None or present == 0:
            return present
        ids = [v for v in visible.split(",") if v.strip() and not v.strip().startswith("-")]
        return min(len(ids), present)
    import torch

    return int(torch.cuda.device_count())


def _wants_cuda(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and visible_gpus() > 0)


def default_chunk(device: str) -> int:
    """Block size when none is given: 1024 px on CPU, 2048 on CUDA.

    A block's accumulator takes 4 bytes per class and pixel, and one block
    per worker thread is in flight: 1024 keeps a CPU run's blocks to ~100 MB
    together, at no cost in speed (the tile grid, and so the work, does not
    depend on the block size). A GPU gets bigger blocks so that they fill its
    batches.
    """
    return 2048 if _wants_cuda(device) else 1024


def local_workers(device: str) -> int:
    """Workers of a local cluster: one per GPU on a machine with several (see :func:`worker_device`), else per core."""
    gpus = visible_gpus() if device in ("auto", "cuda") else 0
    return gpus if gpus > 1 else (os.cpu_count() or 1)


def worker_device(device: str, worker: object = None, gpus: int | None = None) -> str:
    """The GPU a Dask worker uses on a machine with several: one worker per GPU.

    ``cuda`` or ``auto`` in a worker whose name ends in a number N (a
    ``LocalCluster``'s workers are named 0, 1, ...; ``dask worker --name
    gpu-3`` gives 3) becomes ``cuda:N mod <GPUs>``. A pinned ``cuda:N``, ``cpu``,
    one GPU, or no worker (a local run) leave `device` as it is. `worker`
    (the worker's name) and `gpus` default to the current worker's and the
    visible device count; workers that see one GPU each (dask-cuda's
    ``CUDA_VISIBLE_DEVICES`` per worker) keep ``cuda``.
    """
    if device not in ("auto", "cuda"):
        return device
    if worker is None:
        if "distributed" not in sys.modules:
            return device
        from distributed import get_worker

        try:
            worker = get_worker().name
        except ValueError:  # not inside a worker
            return device
    gpus = visible_gpus() if gpus is None else gpus
    digits = re.search(r"(\d+)$", str(worker))
    if gpus < 2 or digits is None:
        return device
    return f"cuda:{int(digits.group(1)) % gpus}"


# -- which engine runs a run ------------------------------------------------------------------


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def engine_cache() -> Path:
    """Where graphs exported from checkpoints are kept: ``<model library>/engines``."""
    from ..models.registry import models_dir

    return models_dir() / "engines"


def cached_graph(model_sha256: str, precision: str) -> Path:
    """The cache file of a checkpoint's ``fp32`` or ``int8`` graph (it may not exist yet)."""
    return engine_cache() / f"{model_sha256[:24]}.{precision}.onnx"


@dataclass(frozen=True)
class EngineChoice:
    """The file a run executes and the engine and precision it runs with.

    `precision` is None for torch, whose precision is resolved on the
    device (:func:`geoseg.predict.engine.resolve_precision`).
    """

    engine: str
    path: Path
    precision: str | None
    source_sha256: str
    reason: str


def _graph_precision(path: Path) -> str:
    from .onnx_engine import read_metadata

    return read_metadata(path).get("geoseg_precision", "fp32")


def choose_engine(
    model: str | os.PathLike[str], *, engine: str, device: str, precision: str, remote: bool = False
) -> EngineChoice:
    """Which engine and file run `model` on `device` at `precision`.

    - A ``.onnx`` file runs with ONNX Runtime at the precision it was exported with.
    - ``--engine torch`` runs the checkpoint with torch.
    - ``--engine onnx`` runs the checkpoint's calibrated int8 graph where one
      was made (``geoseg model export MODEL --int8 --calibrate ...``) and
      ``--precision`` allows it, else its fp32 graph, exported once into the
      engine cache.
    - ``--engine auto``: CUDA, an explicit ``bf16``/``fp16``/``fp32``, and CPUs with
      AMX run torch (AMX's bf16 matrix units run a U-Net ResNet-34 forward
      pass 1.5x faster than ONNX Runtime's int8 kernels, README "ONNX
      models and int8"); on other CPUs the calibrated int8 graph runs where one
      exists (1.85x faster than torch bf16 on a Zen 4), else torch. With
      `remote` workers (a ``tcp://`` cluster), whose hardware this process
      cannot see, auto is torch.

    Raises
    ------
    ConfigError
        The combination cannot run (``--engine torch`` with an ``.onnx``, a
        precision the graph was not exported at, ``int8`` without a
        calibrated graph).
    """
    from .._files import sha256_file
    from ..errors import ConfigError

    path = Path(model)
    sha = sha256_file(path)
    if is_onnx(path):
        if engine == "torch":
            raise ConfigError(
                f"{path.name} is an ONNX graph, which runs with ONNX Runtime only; use --engine auto or onnx, "
                "or pass the geoseg checkpoint it was exported from"
            )
        graph = _graph_precision(path)
        if precision not in ("auto", graph):
            raise ConfigError(
                f"{path.name} is a {graph} graph and cannot run at --precision {precision}; use --precision auto "
                "or export the model at that precision"
            )
        return EngineChoice("onnx", path, graph, sha, "an ONNX model")
    int8 = cached_graph(sha, "int8")
    if precision == "int8" and not int8.is_file():
        raise ConfigError(
            f"--precision int8 needs a calibrated int8 graph of {path.name}; make one with "
            f"`geoseg model export {path} --int8 --calibrate SCENES` (it is then used automatically)"
        )
    if engine == "torch" or (engine == "auto" and precision in ("bf16", "fp16", "fp32")):
        if precision == "int8":
            raise ConfigError("--precision int8 runs with ONNX Runtime; use --engine onnx or auto")
        return EngineChoice(
            "torch", path, None, sha, "--engine torch" if engine == "torch" else f"--precision {precision}"
        )
    cuda = _wants_cuda(device)
    if engine == "auto":
        if precision == "int8":
            return EngineChoice("onnx", int8, "int8", sha, "--precision int8")
        if remote:
            return EngineChoice("torch", path, None, sha, "a cluster's workers choose their device")
        if cuda:
            return EngineChoice("torch", path, None, sha, "a CUDA device")
        if "amx_bf16" in cpu_flags() and precision == "auto":
            return EngineChoice("torch", path, None, sha, "a CPU with AMX (bf16 matrix units)")
        if int8.is_file():
            return EngineChoice("onnx", int8, "int8", sha, "a calibrated int8 graph")
        return EngineChoice("torch", path, None, sha, "no calibrated int8 graph")
    # --engine onnx
    if precision in ("bf16", "fp16"):
        raise ConfigError(f"ONNX Runtime runs fp32 or int8 graphs; --precision {precision} needs --engine torch")
    if precision in ("auto", "int8") and int8.is_file() and not cuda:
        return EngineChoice("onnx", int8, "int8", sha, "a calibrated int8 graph")
    fp32 = cached_graph(sha, "fp32")
    if not fp32.is_file():
        from .onnx_export import export_onnx

        log.info("exporting %s to ONNX once, into %s", path.name, fp32)
        fp32.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(path, fp32)
    return EngineChoice("onnx", fp32, "fp32", sha, "--engine onnx")
