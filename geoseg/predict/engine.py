"""Batched inference on CPU or CUDA: one model per process, loaded once."""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from .batching import TilePredictor
from .checkpoint import load_checkpoint
from .models import input_multiple
from .spec import ModelSpec

__all__ = [
    "Predictor",
    "cpu_has_bf16",
    "get_predictor",
    "resolve_device",
    "resolve_precision",
]

log = logging.getLogger(__name__)

# One forward pass at a time per device in a process: threads that share a model
# would otherwise fight over the same cores (CPU) or memory (GPU).
_DEVICE_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; validates ``cuda:N``.

    Raises
    ------
    ConfigError
        CUDA was requested but is not available, or the index is out of range.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here; use cuda:0.."
                f"{torch.cuda.device_count() - 1}"
            )
    elif dev.type != "cpu":
        raise ConfigError(f"unsupported device {device!r}; use auto, cpu, cuda or cuda:N")
    return dev


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch: no way to tell, stay exact
        return False


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """``auto`` -> ``bf16`` (CUDA with bf16, or a CPU with native bf16), ``fp16`` (older CUDA), else ``fp32``.

    On a 2-core Zen 4 (AVX512-BF16), bf16 autocast with channels_last runs a
    U-Net R34 forward 2x faster than fp32 (PERFORMANCE.md), and the trained demo
    model's argmax agrees with fp32 on 99.9 % of pixels (README, Performance).
    Without native bf16 a CPU emulates it, slower than fp32: then auto is fp32.

    Raises
    ------
    ConfigError
        ``fp16`` on a CPU.
    """
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("--precision fp16 needs a CUDA device; use bf16 or fp32 on a CPU")
    if precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
    return precision


class Predictor(TilePredictor):
    """A model on a device that turns image tiles into class probabilities.

    Parameters
    ----------
    checkpoint : path-like
        A geoseg checkpoint.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    batch_size : int, optional
        Tiles per forward pass (default: 1 on CPU, where larger batches do not
        help, 8 on CUDA).
    precision : str
        ``auto``, ``fp32``, ``bf16`` or ``fp16`` (autocast); see :func:`resolve_precision`.
    compile : bool
        Run the model through ``torch.compile`` (TorchInductor). The first
        forward pass of each input shape waits for the compilation (~40 s for
        a U-Net ResNet-34 on a 2-core CPU); later ones are faster, most on
        CUDA. Where compilation fails (no C++ compiler, say), the model runs
        eagerly and a warning says why.
    threads : int, optional
        Torch intra-op threads per forward pass on CPU. geoseg's pipeline
        uses 1 and runs one forward pass per core at once: CPU convolutions
        give slightly different bits for different thread counts, and a fixed
        count keeps results identical across schedulers and machines' core
        counts.

    Notes
    -----
    On CPU, forward passes from several threads run concurrently (the model
    is read-only in inference mode); on CUDA they are serialised per device.
    The model runs in channels_last memory layout on every device.
    On CUDA, inputs travel as their raw integer type through pinned memory and
    are normalised on the device; batches are padded to `batch_size` so every
    forward pass has the same shape.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str],
        *,
        device: str = "auto",
        batch_size: int | None = None,
        precision: str = "auto",
        threads: int | None = None,
        compile: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(self.device, precision)
        self.threads = threads
        model, spec = load_checkpoint(checkpoint)
        self.spec: ModelSpec = spec
        self.multiple = input_multiple(model)
        cuda = self.device.type == "cuda"
        self.on_gpu = cuda
        self.batch_size = batch_size or (8 if cuda else 1)
        self.amp = self.precision != "fp32"
        self.amp_dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        self.memory_format = torch.channels_last
        self.model = model.to(self.device).to(memory_format=self.memory_format).eval()
        self._run: Callable[[torch.Tensor], torch.Tensor] = self.model
        if compile:
            if not cuda:  # the compiler notes that this machine has no CUDA toolkit: it needs none here
                logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            self._run = torch.compile(self.model, dynamic=False)
        self._mean = torch.tensor(spec.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(spec.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._lock: AbstractContextManager[object] = nullcontext()
        if cuda:
            with _LOCKS_GUARD:
                self._lock = _DEVICE_LOCKS.setdefault(str(self.device), threading.Lock())
        log.info(
            "loaded %s (%s/%s) on %s, batch %d, %s",
            Path(checkpoint).name,
            spec.arch,
            spec.encoder,
            self.device,
            self.batch_size,
            self.precision,
        )

    def _autocast(self) -> AbstractContextManager[object]:
        if not self.amp:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _to_tensor(self, tiles: np.ndarray) -> torch.Tensor:
        if tiles.dtype == np.uint16 or tiles.dtype == np.uint32:
            tiles = tiles.astype(np.int32)
        elif tiles.dtype == np.float64:
            tiles = tiles.astype(np.float32)
        x = torch.from_numpy(np.ascontiguousarray(tiles))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        return x

    @torch.inference_mode()
    def _forward(self, chunk: np.ndarray) -> np.ndarray:
        if self.threads and self.device.type == "cpu" and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with self._lock:
            x = self._to_tensor(chunk).float()
            x = ((x - self._mean) / self._std).contiguous(memory_format=self.memory_format)
            with self._autocast():
                logits = self._call(x)
            probs = torch.softmax(logits.float(), dim=1)
            return probs.cpu().numpy()

    @property
    def compiled(self) -> bool:
        """Whether forward passes run through ``torch.compile`` (False after it failed)."""
        return self._run is not self.model

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        if not self.compiled:
            return self.model(x)
        try:
            return self._run(x)
        except Exception as exc:  # the compiler's failure (toolchain, unsupported op): run eagerly instead
            log.warning("torch.compile failed, running the model eagerly: %s", str(exc).strip().splitlines()[0])
            self._run = self.model
            return self.model(x)


_CACHE_GUARD = threading.Lock()


@functools.lru_cache(maxsize=4)
def _cached(
    path: str,
    mtime_ns: int,
    size: int,
    device: str,
    batch_size: int | None,
    precision: str,
    threads: int | None,
    compile: bool,
) -> Predictor:
    return Predictor(path, device=device, batch_size=batch_size, precision=precision, threads=threads, compile=compile)


def get_predictor(
    checkpoint: str | os.PathLike[str],
    *,
    device: str = "auto",
    batch_size: int | None = None,
    precision: str = "auto",
    threads: int | None = None,
    compile: bool = False,
) -> Predictor:
    """The process-wide :class:`Predictor` for a checkpoint, loaded on first use.

    Dask tasks call this instead of receiving a model: each worker process
    loads the weights once and every later task reuses them.
    """
    p = Path(checkpoint).resolve()
    st = p.stat()
    with _CACHE_GUARD:
        return _cached(str(p), st.st_mtime_ns, st.st_size, device, batch_size, precision, threads, compile)
