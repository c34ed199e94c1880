"""Dask clusters: the same graph on an existing cluster, and a worker lost mid-run costs a retry, not the run."""

from __future__ import annotations

import os
import platform
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest

from geoseg.config import RunConfig
from geoseg.pipeline import run
from geoseg.synthetic import SceneSpec, write_scene


def _done_blocks(store: Path) -> int:
    return sum(1 for p in (store / "done").rglob("*") if p.is_file() and p.name != "zarr.json")


@pytest.mark.timeout(600)
def test_a_killed_cluster_worker_costs_a_retry_not_the_run(tmp_path, fcn_model):
    from distributed import Client, LocalCluster

    scene = tmp_path / "scene.tif"
    write_scene(SceneSpec(width=1024, height=1024, pixel_size=0.25, seed=31), scene)
    kw = dict(scene=scene, model=fcn_model, tile=128, overlap=32, chunk=256, min_area=0, simplify=0)
    reference = run(RunConfig(outdir=tmp_path / "ref", **kw))

    outcome: dict[str, object] = {}
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        pids = client.run(os.getpid)  # worker address -> process id

        cfg = RunConfig(outdir=tmp_path / "cluster", scheduler=cluster.scheduler_address, **kw)

        def go() -> None:
            try:
                outcome["result"] = run(cfg)
            except BaseException as exc:  # reported below
                outcome["error"] = exc

        thread = threading.Thread(target=go)
        thread.start()
        store = tmp_path / "cluster" / "scene.zarr"
        t0 = time.monotonic()
        while not (store.exists() and _done_blocks(store) >= 3):
            assert thread.is_alive(), f"the run ended before a worker could be killed: {outcome}"
            assert time.monotonic() - t0 < 300
            time.sleep(0.05)
        victim = next(iter(pids.values()))
        os.kill(victim, signal.SIGKILL)  # a worker lost mid-run (its nanny starts a new one)
        thread.join(timeout=540)
        assert not thread.is_alive()
        assert victim not in client.run(os.getpid).values()  # it really died
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    ref_cog = reference.outputs["classes"].read_bytes()
    assert result.outputs["classes"].read_bytes() == ref_cog  # byte-identical to the undisturbed run
    _, _, wkb_a, cols_a = pyogrio.raw.read(reference.outputs["landcover"], layer="landcover")
    _, _, wkb_b, cols_b = pyogrio.raw.read(result.outputs["landcover"], layer="landcover")
    assert list(wkb_a) == list(wkb_b)
    for a, b in zip(cols_a, cols_b, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("device", "worker", "gpus", "expected"),
    [
        ("cuda", 0, 4, "cuda:0"),
        ("auto", 3, 4, "cuda:3"),
        ("cuda", 5, 4, "cuda:1"),  # more workers than GPUs: round robin
        ("cuda", "tcp-gpu-2", 4, "cuda:2"),  # dask worker --name gpu-2
        ("cuda:1", 3, 4, "cuda:1"),  # pinned stays pinned
        ("cpu", 3, 4, "cpu"),
        ("cuda", 3, 1, "cuda"),  # one visible GPU (dask-cuda's CUDA_VISIBLE_DEVICES per worker)
        ("auto", "scheduler-less", 4, "auto"),  # a name without a number
    ],
)
def test_one_dask_worker_per_gpu(device, worker, gpus, expected):
    from geoseg.predict.runtime import worker_device

    assert worker_device(device, worker, gpus) == expected


def test_outside_a_worker_the_device_is_kept():
    from geoseg.predict.runtime import worker_device

    assert worker_device("cuda") == "cuda"


def _reuses_freed_heap() -> dict[str, object]:
    """In this process: is a 4 MiB buffer, allocated again after being freed, taken from the heap (not mmapped)?"""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = MallInfo2
    from geoseg.predict.runtime import get_predictor  # noqa: F401  (what a scene or block task imports)

    libc.free(libc.malloc(4 << 20))  # glibc raises its dynamic mmap threshold past a freed mapped chunk
    mapped = libc.mallinfo2().hblks
    buf = libc.malloc(4 << 20)
    again = libc.mallinfo2().hblks
    libc.free(buf)
    return {"env": os.environ.get("MALLOC_TRIM_THRESHOLD_"), "mapped_again": again > mapped}


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc thresholds: Linux with glibc only")
def test_workers_of_a_local_cluster_keep_glibcs_usual_heap_thresholds():
    """A Dask nanny sets MALLOC_TRIM_THRESHOLD_ (which freezes the mmap threshold); geoseg's workers undo it."""
    from distributed import Client, LocalCluster

    from geoseg.pipeline.scheduler import local_cluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as plain,
        Client(plain) as client,
    ):
        (seen,) = client.run(_reuses_freed_heap).values()
    assert seen == {"env": "65536", "mapped_again": True}  # what Dask's setting does to a plain worker
    with local_cluster(1, own_folders=False) as cluster, Client(cluster) as client:
        (seen,) = client.run(_reuses_freed_heap).values()
    assert seen == {"env": "65536", "mapped_again": False}
