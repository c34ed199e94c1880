"""Regional jobs with several scenes at once: scenes as tasks on a Dask cluster, and two stages overlapped here.

Every way of mapping a job gives the same bytes as mapping its scenes one after another: class COGs byte
for byte, GeoPackage features and attributes, the regional layer.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
from datetime import datetime
from pathlib import Path

import pytest
from distributed.diagnostics.plugin import WorkerPlugin

from geoseg.batch import load_job, run_batch
from geoseg.predict.checkpoint import init_checkpoint
from geoseg.synthetic import SceneSpec, write_scene
from tests.conftest import assert_same_outputs, features, invoke, start, wait_for
from tests.test_batch import split_scene, write_job

STEMS = ("part0", "part1", "part2")
#: exact polygons, and 4 blocks per scene (a worker can be stopped part-way through one)
RUN = {"chunk": 128, "min_area": 0, "simplify": 0}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "fcn.pt"
    init_checkpoint(path, arch="fcn", encoder="resnet18", tile_size=128, seed=1)
    return path


@pytest.fixture(scope="module")
def region(tmp_path_factory, model) -> tuple[Path, Path]:
    """Three neighbouring scenes (with the model beside them), mapped one after another: the reference."""
    root = tmp_path_factory.mktemp("region")
    (root / "fcn.pt").symlink_to(model)
    write_scene(SceneSpec(width=768, height=256, pixel_size=0.25, seed=23), root / "mosaic.tif")
    split_scene(root / "mosaic.tif", root / "scenes", 256)
    (root / "mosaic.tif").unlink()
    ref = job_file(root, "ref", scheduler="threads", scenes_in_flight=1)
    code, out = invoke("batch", ref, "-q")
    assert code == 0, out
    return root, root / "ref"


def job_file(root: Path, name: str, **values: object) -> Path:
    """A job of the three scenes into ``ROOT/NAME``."""
    model = root / "fcn.pt"
    return write_job(
        root / f"{name}.yaml", region=name, scenes=["scenes/*.tif"], model=str(model), output=name, run=RUN, **values
    )


def manifest(out: Path, region: str) -> dict:
    return json.loads((out / f"{region}.manifest.json").read_text())


def assert_same_as_reference(ref: Path, out: Path, region: str) -> None:
    for stem in STEMS:
        assert_same_outputs(ref / "scenes", out / "scenes", stem)
    wa, ca = features(ref / "ref.landcover.gpkg")
    wb, cb = features(out / f"{region}.landcover.gpkg")
    assert wa == wb
    for a, b in zip(ca, cb, strict=True):
        assert list(a) == list(b)


class _WorkElsewhere(WorkerPlugin):
    """A worker plugin: each worker works in its own local directory, not in the client's working directory."""

    name = "work-elsewhere"

    def setup(self, worker) -> None:
        os.chdir(worker.local_directory)


@pytest.mark.timeout(600)
def test_scenes_as_tasks_on_a_cluster_equal_a_sequential_batch_and_rerun_skips(region, tmp_path):
    from distributed import Client, LocalCluster

    root, ref = region
    job = load_job(job_file(root, "cl"))
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            local_directory=str(tmp_path / "workers"),
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(_WorkElsewhere())
        cwds = client.run(os.getcwd)
        assert len(set(cwds.values())) == 2 and os.getcwd() not in cwds.values()
        assert all(c.startswith(str(tmp_path / "workers")) for c in cwds.values())

        on_cluster = job.model_copy(update={"scheduler": cluster.scheduler_address})
        result = run_batch(on_cluster)
        assert not result.failed
        m = manifest(root / "cl", "cl")
        assert m["counts"] == {"done": 3, "skipped": 0, "failed": 0, "interrupted": 0, "pending": 0}
        assert [s["scene"] for s in m["scenes"]] == list(STEMS)  # the job's order, whatever order they finished in
        assert all(s["attempts"] == 1 for s in m["scenes"])
        assert m["regional"]["scenes"] == list(STEMS) and m["regional"]["features"] == result.regional_features
        assert_same_as_reference(ref, root / "cl", "cl")
        assert not list((root / "cl" / "scenes").glob("*.zarr"))  # each worker removed its scene's store
        params = json.loads((root / "cl" / "scenes" / "part0.run.json").read_text())["parameters"]
        assert (params["scheduler"], params["workers"]) == ("threads", 1)  # the blocks on its worker's one thread

        before = {s: (root / "cl" / "scenes" / f"{s}.classes.tif").stat().st_mtime_ns for s in STEMS}
        again = run_batch(on_cluster)
    assert [s.status for s in again.scenes] == ["skipped"] * 3
    assert manifest(root / "cl", "cl")["counts"]["skipped"] == 3
    assert {s: (root / "cl" / "scenes" / f"{s}.classes.tif").stat().st_mtime_ns for s in STEMS} == before


@pytest.mark.timeout(600)
def test_a_worker_killed_mid_batch_costs_a_retry_not_the_job(region):
    root, ref = region
    job = job_file(root, "kill")
    # every worker of the job's local:2 cluster stops after storing its second block; the test kills the first
    # that gets there; the scene's next attempt (on the other worker, or the one started again) passes the point
    proc, marker = start("batch", job, "--scheduler", "local:2", "-q", cwd=root, failpoint="segment:2")
    wait_for(proc, marker)
    worker = int(marker.read_text())
    assert worker != proc.pid
    os.kill(worker, signal.SIGKILL)
    _out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err.decode()[-3000:]
    m = manifest(root / "kill", "kill")
    assert m["counts"]["done"] == 3
    attempts = {s["scene"]: s["attempts"] for s in m["scenes"]}
    assert sorted(attempts.values()) == [1, 1, 2], attempts  # the lost worker's scene, once more
    killed = next(s for s in m["scenes"] if s["attempts"] == 2)
    assert killed["resumed_blocks"] == 2  # ... from the blocks its first attempt stored
    assert_same_as_reference(ref, root / "kill", "kill")


@pytest.mark.timeout(600)
def test_one_scene_in_flight_maps_one_scene_at_a_time(region):
    root, ref = region
    result = run_batch(load_job(job_file(root, "one", scheduler="local:2", scenes_in_flight=1)))
    assert not result.failed
    spans = sorted(
        (datetime.fromisoformat(s["started"]), datetime.fromisoformat(s["finished"]))
        for s in manifest(root / "one", "one")["scenes"]
    )
    assert len(spans) == 3
    for (_, end), (begin, _) in itertools.pairwise(spans):
        assert begin >= end, spans  # each scene started on its worker after the one before had finished
    assert_same_as_reference(ref, root / "one", "one")


@pytest.mark.timeout(600)
def test_overlapped_stages_here_equal_a_sequential_batch(region):
    root, ref = region
    result = run_batch(load_job(job_file(root, "two", scheduler="threads", scenes_in_flight=2)))
    assert not result.failed
    m = manifest(root / "two", "two")
    assert m["counts"]["done"] == 3
    scenes = m["scenes"]
    for before, after in itertools.pairwise(scenes):
        # the next scene was segmenting while this one was still being vectorised
        assert datetime.fromisoformat(after["started"]) < datetime.fromisoformat(before["finished"])
    assert_same_as_reference(ref, root / "two", "two")


@pytest.mark.timeout(600)
def test_sigterm_during_overlapped_stages_exits_130_and_the_rerun_is_identical(region):
    root, ref = region
    job = job_file(root, "term", scheduler="threads", scenes_in_flight=2, workers=2)
    # the first scene's vector stage stops in a cell while the second scene is segmented
    proc, marker = start("batch", job, "-q", cwd=root, failpoint="vectorize")
    wait_for(proc, marker)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-3000:]
    m = manifest(root / "term", "term")
    status = [s["status"] for s in m["scenes"]]
    assert status[0] == "interrupted" and "done" not in status, status
    assert not (root / "term" / "scenes" / "part0.landcover.gpkg").exists()  # nothing half-written
    assert not list((root / "term" / "scenes").glob(".*part*"))  # its temporary file was removed
    code, out = invoke("batch", job, "-q")
    assert code == 0, out
    assert [s["status"] for s in manifest(root / "term", "term")["scenes"]] == ["done"] * 3
    assert_same_as_reference(ref, root / "term", "term")


@pytest.mark.timeout(600)
def test_a_model_the_workers_cannot_read_is_sent_to_them(region, tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    from geoseg._files import sha256_file
    from geoseg.batch_parallel import map_scene, ship_model

    root, ref = region
    monkeypatch.chdir(root)  # "fcn.pt" names the model here, and nothing in the workers' own folders
    job = load_job(job_file(root, "ship"))
    cfg = job.run_config(job.path("scenes/part1.tif"), Path("fcn.pt"))
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            local_directory=str(tmp_path / "workers"),
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(_WorkElsewhere())
        assert not any(client.run(os.path.isfile, "fcn.pt").values())
        name = ship_model(client, Path("fcn.pt"), sha256_file("fcn.pt"))
        assert name is not None and name.endswith(".pt")
        summary = client.submit(map_scene, cfg, name, pure=False).result()
        # a model every worker reads where it is is not sent
        assert ship_model(client, root / "fcn.pt", sha256_file("fcn.pt")) is None
    assert summary.status == "done", summary.error
    assert_same_outputs(ref / "scenes", root / "ship" / "scenes", "part1")
    report = json.loads((root / "ship" / "scenes" / "part1.run.json").read_text())
    assert report["model"]["sha256"] == sha256_file(root / "fcn.pt")
