"""What every engine's predictor shares: tiles in, class probabilities out, in batches, some passes at once.

Torch-free: :class:`~geoseg.predict.engine.Predictor` (torch) and
:class:`~geoseg.predict.onnx_engine.OnnxPredictor` (ONNX Runtime) implement
only :meth:`TilePredictor._forward`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from .spec import ModelSpec

__all__ = ["TilePredictor"]

# CPU forward passes of every block in a process share one pool, so the number
# running at once never exceeds the cores given to this process.
_POOLS: dict[int, ThreadPoolExecutor] = {}
_GUARD = threading.Lock()


def _pool(size: int) -> ThreadPoolExecutor:
    with _GUARD:
        if size not in _POOLS:
            _POOLS[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="geoseg-forward")
        return _POOLS[size]


class TilePredictor:
    """Batching, padding and parallel passes around an engine's forward pass.

    Subclasses set :attr:`spec`, :attr:`multiple` (tile sizes must be a
    multiple of it), :attr:`batch_size` and :attr:`on_gpu` (GPU batches are
    padded to `batch_size`, so every pass has one shape, and run one at a
    time), and implement :meth:`_forward`.
    """

    spec: ModelSpec
    multiple: int
    batch_size: int
    on_gpu: bool

    def _forward(self, chunk: np.ndarray) -> np.ndarray:
        """Softmax probabilities ``(n, K, H, W)`` of raw tiles ``(n, C, H, W)``."""
        raise NotImplementedError

    def batches(self, tiles: np.ndarray) -> Iterator[np.ndarray]:
        """Class probabilities for `tiles`, one batch at a time.

        Parameters
        ----------
        tiles : ndarray, shape (N, C, H, W)
            Raw pixel values in the scene's units; H and W must be multiples of
            :attr:`multiple`.

        Yields
        ------
        ndarray, shape (n, K, H, W), float32
            Softmax probabilities for consecutive batches of the N tiles.
        """
        if tiles.ndim != 4 or tiles.shape[1] != self.spec.in_channels:
            raise ValueError(f"expected tiles of shape (N, {self.spec.in_channels}, H, W), got {tiles.shape}")
        h, w = tiles.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"tile size {h}x{w} is not a multiple of {self.multiple}")
        bs = self.batch_size
        for start in range(0, len(tiles), bs):
            chunk = tiles[start : start + bs]
            n = len(chunk)
            if self.on_gpu and n < bs:
                pad = np.zeros((bs - n, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            yield self._forward(chunk)[:n]

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        """All of :meth:`batches` concatenated (convenient for small inputs)."""
        return np.concatenate(list(self.batches(tiles)))

    def stream(self, batches: Iterable[np.ndarray], *, parallel: int = 1) -> Iterator[np.ndarray]:
        """:meth:`predict` for each of `batches`, in order, up to `parallel` at once on CPU.

        At most `parallel` results are held ahead of the consumer, so memory
        stays bounded however many batches there are.
        """
        if parallel <= 1 or self.on_gpu:
            for b in batches:
                yield self.predict(b)
            return
        pool = _pool(parallel)
        pending: deque[Future[np.ndarray]] = deque()
        for b in batches:
            pending.append(pool.submit(self.predict, b))
            if len(pending) >= parallel:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
