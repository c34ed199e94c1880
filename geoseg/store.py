"""The zarr working store: per-block class and confidence results with completion markers.

Layout of ``<stem>.zarr/``::

    classes      uint8 (H, W), chunks = block core size, fill 255 (nodata)
    confidence   uint8 (H, W), same chunks, fill 0
    done         uint8 (blocks_y, blocks_x), one chunk per block: 1 once the block is written

Each block is written by exactly one task as whole chunks, then marked done, so
concurrent writers never touch the same file and an interrupted run leaves
only complete, marked blocks behind. The store's attributes hold the run's
*fingerprint* (scene checksum, model hash, grid...): a later run with the same
fingerprint resumes from the marked blocks; any other run starts afresh.

The store is a local folder, or an ``s3://bucket/prefix/<stem>.zarr`` folder
of objects (:mod:`geoseg.objects`, zarr's ``ObjectStore``): there every block
task writes its chunks and its done-marker as objects, so workers on other
machines (or in other working directories) need no shared folder, and a run
on any machine resumes from it by the same fingerprint rules.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import objects
from ._files import write_error, writing
from .classes import NODATA
from .errors import GeosegIOError
from .remote import display_name
from .tiling import Block, BlockPlan, Rect

if TYPE_CHECKING:
    import zarr

__all__ = ["WorkStore"]

log = logging.getLogger(__name__)

_ATTR = "geoseg"


class WorkStore:
    """A run's working store at `location` (a folder, or an ``s3://`` URL); cheap to create in every worker."""

    def __init__(self, location: str | Path) -> None:
        self.url: str | None = str(location) if objects.is_remote_dir(str(location)) else None
        self._path = None if self.url else Path(location)

    @property
    def path(self) -> Path:
        """The local folder (a store in object storage has none: see :attr:`location`)."""
        if self._path is None:
            raise TypeError(f"the working store {self.location} is not a local folder")
        return self._path

    @property
    def location(self) -> str:
        """The folder's path or the store's ``s3://`` URL, as workers are given it."""
        return self.url or str(self._path)

    def __str__(self) -> str:
        return display_name(self.location)

    def exists(self) -> bool:
        """Whether anything of the store is there."""
        if self.url:
            return bool(objects.list_objects(self.url))
        return self.path.exists()

    def _zarr(self, read_only: bool = False) -> Any:
        """What zarr opens: the local folder's path, or the object store."""
        return objects.zarr_store(self.url, read_only=read_only) if self.url else str(self.path)

    def _requests(self) -> contextlib.AbstractContextManager[None]:
        """Failed requests to a store in object storage as one line (nothing for a local folder)."""
        return objects.errors(self.url) if self.url else contextlib.nullcontext()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Write failures as one line naming the store."""
        if self.url:
            with objects.errors(self.url):
                yield
        else:
            with writing(self.path):
                yield

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def prepare(
        cls, path: str | Path, plan: BlockPlan, fingerprint: dict[str, Any], *, overwrite: bool = False
    ) -> tuple[WorkStore, int]:
        """Open the store for `fingerprint`, creating it if needed.

        Returns
        -------
        store : WorkStore
        resumed : int
            Number of blocks already complete from an earlier, interrupted run.

        Raises
        ------
        GeosegIOError
            `path` exists but is not a geoseg store and `overwrite` is False.
        """
        import zarr

        store = cls(path)
        shown = str(store)
        if store.exists():
            try:
                with store._requests():
                    group = zarr.open_group(store._zarr(read_only=True), mode="r")
                    old = dict(group.attrs).get(_ATTR)
            except GeosegIOError:
                raise
            except Exception:
                old = None
            if old is None and not overwrite:
                raise GeosegIOError(f"{shown} exists and is not a geoseg working store; remove it or pass --overwrite")
            if old == fingerprint:
                with store._requests():
                    n = int(np.count_nonzero(store._done[:]))
                log.info("resuming from %s: %d of %d blocks complete", shown, n, len(plan))
                return store, n
            log.info("discarding working store %s from a run with other settings", shown)
            store.remove()
        h, w = plan.grid.height, plan.grid.width
        b = plan.block_size
        try:
            with store._writing():
                group = zarr.open_group(store._zarr(), mode="w")
                group.create_array(
                    "classes", shape=(h, w), chunks=(min(b, h), min(b, w)), dtype="uint8", fill_value=NODATA
                )
                group.create_array(
                    "confidence", shape=(h, w), chunks=(min(b, h), min(b, w)), dtype="uint8", fill_value=0
                )
                group.create_array("done", shape=plan.shape, chunks=(1, 1), dtype="uint8", fill_value=0)
                group.attrs[_ATTR] = fingerprint
        except OSError as exc:
            if isinstance(exc, GeosegIOError):
                raise
            raise write_error(path, exc) from exc
        return store, 0

    # -- arrays -----------------------------------------------------------------------------
    def _array(self, name: str, mode: str = "r") -> zarr.Array:
        import zarr

        if self.url:
            return zarr.open_array(self._zarr(read_only=mode == "r"), path=name, mode=mode)
        return zarr.open_array(str(self.path / name), mode=mode)

    @property
    def _done(self) -> zarr.Array:
        return self._array("done")

    def done_blocks(self) -> set[tuple[int, int]]:
        """Indices of blocks already written."""
        with self._requests():
            ys, xs = np.nonzero(np.asarray(self._done[:]))
        return {(int(y), int(x)) for y, x in zip(ys, xs, strict=True)}

    def write_block(self, block: Block, classes: np.ndarray, confidence: np.ndarray) -> None:
        """Write a block's final results, then mark it done."""
        s = block.core.slices()
        with self._writing():
            self._array("classes", "r+")[s] = classes
            self._array("confidence", "r+")[s] = confidence
            self._array("done", "r+")[block.by, block.bx] = 1

    def check_complete(self, plan: BlockPlan) -> None:
        """Fail unless every block of `plan` is marked done.

        Readers of the store (the vector stage, the COG export) call this
        first: a chunk missing from the store reads as its fill value, so a
        store removed or emptied under a run would otherwise become a class
        raster of nodata, written with success.

        Raises
        ------
        GeosegIOError
            Blocks are missing (the message says how many).
        """
        try:
            done = int(np.count_nonzero(np.asarray(self._done[:])))
        except Exception as exc:  # zarr raises its own errors for a store removed under it
            if isinstance(exc, GeosegIOError):
                raise
            raise GeosegIOError(
                f"working store {self} is gone or damaged ({type(exc).__name__}); "
                "was it removed by another process? Run the same command again"
            ) from exc
        if done < len(plan):
            raise GeosegIOError(
                f"working store {self} holds {done} of {len(plan)} finished blocks; "
                "was it removed or changed by another process? Run the same command again"
            )

    def ensure(self, name: str, *, like: str = "classes", chunks: int | None = None) -> None:
        """Create array `name` shaped like `like` (emptied if it exists), chunked like it or in `chunks` squares."""
        import zarr

        src = self._array(like)
        shape = src.shape
        chunk_shape = src.chunks if chunks is None else tuple(min(chunks, n) for n in shape)
        with self._writing():
            group = zarr.open_group(self._zarr(), mode="r+")
            group.create_array(
                name, shape=shape, chunks=chunk_shape, dtype=src.dtype, fill_value=src.fill_value, overwrite=True
            )

    def write(self, rect: Rect, data: np.ndarray, name: str) -> None:
        """Write a rectangle of one array (whole chunks only when tasks write concurrently)."""
        with self._writing():
            self._array(name, "r+")[rect.slices()] = data

    def read(self, rect: Rect, name: str = "classes") -> np.ndarray:
        """Read a rectangle (inside the scene) of one array."""
        with self._requests():
            return np.asarray(self._array(name)[rect.slices()])

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self._array("classes").shape)  # type: ignore[return-value]

    def remove(self) -> None:
        if self.url:
            objects.remove_prefix(self.url)
        else:
            shutil.rmtree(self.path, ignore_errors=True)
