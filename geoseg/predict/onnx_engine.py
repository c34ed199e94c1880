"""Inference with ONNX Runtime: a :class:`OnnxPredictor` runs a geoseg ``.onnx`` graph without torch.

An ONNX file written by ``geoseg model export`` carries its whole
:class:`~geoseg.predict.spec.ModelSpec` in the graph's metadata, so it runs
with nothing beside it. Its input is the normalised image, ``(pixel - mean) /
std`` in float32, shape ``(N, C, H, W)``; its output is the softmax
probabilities, ``(N, K, H, W)``. The metadata also carries the keys the QGIS
plugins Deepness and GeoDeep read (``model_type``, ``class_names``,
``resolution``, ``tiles_size``, ``tiles_overlap``, ``standardization_mean`` /
``standardization_std``), which describe the same normalisation for 8-bit
imagery scaled to 0..1.

This module imports onnxruntime, never torch: a worker that runs an ONNX
model starts in a fraction of the time and memory a torch worker needs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError, GeosegIOError
from .batching import TilePredictor
from .spec import ModelSpec

__all__ = [
    "FORMAT_KEY",
    "OnnxPredictor",
    "get_onnx_predictor",
    "read_metadata",
    "read_onnx_spec",
]

log = logging.getLogger(__name__)

#: Metadata key whose presence marks a geoseg graph, and its format version.
FORMAT_KEY = "geoseg_onnx"
FORMAT_VERSION = 1


def _session_options(threads: int | None, *, optimize: bool = True) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # ORT's own warnings (unused initialisers...) are not the user's concern
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return so


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The custom metadata of an ONNX file (``metadata_props``), read with onnxruntime.

    Raises
    ------
    GeosegIOError
        The file does not exist.
    CheckpointError
        The file is not an ONNX model onnxruntime can read.
    """
    p = Path(path)
    if not p.is_file():
        raise GeosegIOError(f"model file not found: {p}; pass --model PATH to a geoseg checkpoint or .onnx file")
    st = p.stat()
    return dict(_metadata(str(p.resolve()), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=8)
def _metadata(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, str], ...]:
    """Read once per file version: choosing the engine, reading the spec and hashing all ask for it."""
    import onnxruntime as ort

    p = Path(path)
    try:
        sess = ort.InferenceSession(str(p), _session_options(1, optimize=False), providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{p.name} is not an ONNX model onnxruntime can read ({first})") from exc
    return tuple(sess.get_modelmeta().custom_metadata_map.items())


def _spec_from(meta: Mapping[str, str], name: str) -> ModelSpec:
    if FORMAT_KEY not in meta or "geoseg_spec" not in meta:
        raise CheckpointError(
            f"{name} is an ONNX model without geoseg's description; export it with "
            "`geoseg model export MODEL.pt -o MODEL.onnx`"
        )
    try:
        version = int(meta[FORMAT_KEY])
    except ValueError:
        raise CheckpointError(f"{name} has an invalid {FORMAT_KEY} value {meta[FORMAT_KEY]!r}") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{name} uses geoseg ONNX format {version}; upgrade geoseg to read it")
    try:
        return ModelSpec.from_dict(json.loads(meta["geoseg_spec"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{name} has an invalid model description: {exc}") from exc


def read_onnx_spec(path: str | os.PathLike[str]) -> ModelSpec:
    """The :class:`ModelSpec` stored in a geoseg ONNX file's metadata."""
    return _spec_from(read_metadata(path), Path(path).name)


def _providers(device: str) -> tuple[list[Any], str]:
    """Execution providers for `device` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and the device they mean."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    cuda_ok = "CUDAExecutionProvider" in available
    if device == "auto":
        from .runtime import visible_gpus

        device = "cuda" if cuda_ok and visible_gpus() > 0 else "cpu"
    if device == "cpu":
        return ["CPUExecutionProvider"], "cpu"
    if not device.startswith("cuda"):
        raise ConfigError(f"unsupported device {device!r}; use auto, cpu, cuda or cuda:N")
    if not cuda_ok:
        raise ConfigError(
            f"--device {device}: this onnxruntime has no CUDA support; install onnxruntime-gpu or use --device cpu"
        )
    index = int(device.split(":")[1]) if ":" in device else 0
    providers: list[Any] = []
    if "TensorrtExecutionProvider" in available and os.environ.get("GEOSEG_TENSORRT", "") == "1":
        cache = Path(os.environ.get("GEOSEG_TENSORRT_CACHE", Path.home() / ".cache" / "geoseg" / "tensorrt"))
        providers.append(
            (
                "TensorrtExecutionProvider",
                {"device_id": index, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)},
            )
        )
    providers += [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return providers, f"cuda:{index}"


#: Execution providers that run a graph on the GPU.
_GPU_PROVIDERS = frozenset({"CUDAExecutionProvider", "TensorrtExecutionProvider"})

_GUARD = threading.Lock()
_DEVICE_LOCKS: dict[str, threading.Lock] = {}


class OnnxPredictor(TilePredictor):
    """A geoseg ONNX graph on a device that turns image tiles into class probabilities.

    The same interface as the torch :class:`~geoseg.predict.engine.Predictor`
    (:meth:`batches`, :meth:`predict`, :meth:`stream`, :attr:`spec`,
    :attr:`multiple`, :attr:`batch_size`), so the pipeline runs either.

    Parameters
    ----------
    path : path-like
        An ONNX file written by ``geoseg model export``.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (CUDA needs ``onnxruntime-gpu``;
        with ``GEOSEG_TENSORRT=1`` the TensorRT provider is tried first where installed).
    batch_size : int, optional
        Tiles per run (default 1 on CPU, 8 on CUDA).
    precision : str
        ``auto`` or the graph's own precision (``fp32`` or ``int8``): a graph
        has one precision, fixed when it was exported.
    threads : int, optional
        Intra-op threads per run on CPU (default 1: geoseg runs one pass per
        core at once, and a fixed count keeps the result identical
        whatever the scheduler).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "auto",
        batch_size: int | None = None,
        precision: str = "auto",
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        providers, self.device = _providers(device)
        try:
            self.session = ort.InferenceSession(str(self.path), _session_options(threads), providers=providers)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{self.path.name} is not an ONNX model onnxruntime can run ({first})") from exc
        if self.device.startswith("cuda") and not _GPU_PROVIDERS & set(self.session.get_providers()):
            # onnxruntime falls back to the CPU, with only a line in its own log, when the CUDA provider
            # cannot load (onnxruntime-gpu without the CUDA and cuDNN versions it was built for)
            if device != "auto":
                raise ConfigError(
                    f"--device {device}: ONNX Runtime {ort.__version__} could not start its CUDA provider (it needs "
                    "the CUDA and cuDNN versions it was built for; its log names the library it missed); install "
                    "them, or use --engine torch or --device cpu"
                )
            log.warning("ONNX Runtime could not start its CUDA provider; %s runs on the CPU", self.path.name)
            self.device = "cpu"
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.spec: ModelSpec = _spec_from(meta, self.path.name)
        self.metadata = meta
        self.precision = meta.get("geoseg_precision", "fp32")
        if precision not in ("auto", self.precision):
            raise ConfigError(
                f"{self.path.name} is a {self.precision} graph and cannot run at --precision {precision}; "
                f"use --precision auto, or export the model at that precision"
            )
        self.multiple = int(meta.get("geoseg_multiple", "32"))
        self.on_gpu = self.device.startswith("cuda")
        self.batch_size = batch_size or (8 if self.on_gpu else 1)
        self._input = self.session.get_inputs()[0].name
        self._mean = np.asarray(self.spec.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        self._std = np.asarray(self.spec.std, dtype=np.float32).reshape(1, -1, 1, 1)
        self._lock: AbstractContextManager[object] = nullcontext()
        if self.on_gpu:
            with _GUARD:
                self._lock = _DEVICE_LOCKS.setdefault(self.device, threading.Lock())
        log.info(
            "loaded %s (%s/%s, ONNX Runtime %s) on %s, batch %d",
            self.path.name,
            self.spec.arch,
            self.spec.encoder,
            self.precision,
            self.device,
            self.batch_size,
        )

    def _forward(self, chunk: np.ndarray) -> np.ndarray:
        # the same float32 arithmetic as the torch engine's, so both see identical inputs
        x = (chunk.astype(np.float32, copy=False) - self._mean) / self._std
        with self._lock:
            (probs,) = self.session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(probs, dtype=np.float32)


_CACHE_GUARD = threading.Lock()


@functools.lru_cache(maxsize=4)
def _cached(
    path: str, mtime_ns: int, size: int, device: str, batch_size: int | None, precision: str, threads: int | None
) -> OnnxPredictor:
    return OnnxPredictor(path, device=device, batch_size=batch_size, precision=precision, threads=threads)


def get_onnx_predictor(
    path: str | os.PathLike[str],
    *,
    device: str = "auto",
    batch_size: int | None = None,
    precision: str = "auto",
    threads: int | None = None,
) -> OnnxPredictor:
    """The process-wide :class:`OnnxPredictor` for a file, created on first use."""
    p = Path(path).resolve()
    st = p.stat()
    with _CACHE_GUARD:
        return _cached(str(p), st.st_mtime_ns, st.st_size, device, batch_size, precision, threads)
