"""Dask clusters: the same graph on an existing cluster, and a worker lost mid-run costs a retry, not the run."""

from __future__ import annotations

import os
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
