"""Outputs and the working store in object storage (``-o s3://bucket/prefix``), on a loopback S3 API (moto).

Runs write into the bucket over the same loopback API the scene reads use; the objects are then
downloaded and compared with a local run's files byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from geoseg import objects
from geoseg.config import RunConfig
from geoseg.errors import GeosegIOError, LockedError
from geoseg.predict.checkpoint import init_checkpoint
from geoseg.synthetic import SceneSpec, write_scene
from tests.conftest import SECRET, _free_port, assert_same_outputs, invoke, start, wait_for
from tests.pipeline.test_reliability import assert_tree_ends

ARGS = ["--chunk", 128, "--workers", 2, "-q"]
FINAL = [
    "scene.classes.qml",
    "scene.classes.tif",
    "scene.classes.tif.aux.xml",
    "scene.landcover.gpkg",
    "scene.run.json",
]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "fcn.pt"
    init_checkpoint(path, arch="fcn", encoder="resnet18", tile_size=128, seed=1)
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scene") / "scene.tif"
    write_scene(SceneSpec(width=640, height=512, pixel_size=0.25, seed=8), path)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, scene, model) -> Path:
    """The outputs of an uninterrupted local run."""
    out = tmp_path_factory.mktemp("reference")
    code, text = invoke("run", scene, "--model", model, "-o", out, *ARGS)
    assert code == 0, text
    return out


def _prefix() -> str:
    return f"out-{uuid.uuid4().hex[:8]}"


def _keys(s3, prefix: str) -> list[str]:
    found = s3.list_objects_v2(Bucket="bucket", Prefix=f"{prefix}/").get("Contents", [])
    return sorted(o["Key"].removeprefix(f"{prefix}/") for o in found)


def _download(s3, prefix: str, to: Path) -> Path:
    to.mkdir(parents=True, exist_ok=True)
    for key in _keys(s3, prefix):
        s3.download_file("bucket", f"{prefix}/{key}", str(to / key))
    return to


def _finished_exactly(s3, prefix: str, reference: Path, tmp: Path) -> dict:
    """Only the final objects are under `prefix`, identical to the local run's files; the run report."""
    assert _keys(s3, prefix) == FINAL  # no store, no lock, no temporary object
    got = _download(s3, prefix, tmp / f"got-{uuid.uuid4().hex[:6]}")
    assert_same_outputs(reference, got)
    for sidecar in ("scene.classes.qml", "scene.classes.tif.aux.xml"):
        assert (got / sidecar).read_bytes() == (reference / sidecar).read_bytes()
    return json.loads((got / "scene.run.json").read_text())


# -- a whole run ------------------------------------------------------------------------------------


def test_run_into_s3_equals_the_local_run_and_is_not_replaced_without_overwrite(
    s3, scene, model, reference, tmp_path, monkeypatch
):
    import tempfile

    staging = tmp_path / "tmp"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    prefix = _prefix()
    log = tmp_path / "run.log"
    code, out = invoke("run", scene, "--model", model, "-o", f"s3://bucket/{prefix}", *ARGS, "--log-file", log)
    assert code == 0, out
    report = _finished_exactly(s3, prefix, reference, tmp_path)
    assert report["outputs"] == {
        "landcover": f"s3://bucket/{prefix}/scene.landcover.gpkg",
        "classes": f"s3://bucket/{prefix}/scene.classes.tif",
    }
    assert report["parameters"]["outdir"] == f"s3://bucket/{prefix}"
    assert SECRET not in out + log.read_text()
    assert not list(staging.iterdir()), "the staging folder was left behind"

    before = {k: s3.head_object(Bucket="bucket", Key=f"{prefix}/{k}")["ETag"] for k in FINAL}
    code, out = invoke("run", scene, "--model", model, "-o", f"s3://bucket/{prefix}", *ARGS)
    assert code == 1
    lines = out.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out, out
    assert lines[0].startswith("Error: scene.classes.tif, scene.classes.tif.aux.xml, scene.classes.qml")
    assert lines[0].endswith(f"already exist(s) in s3://bucket/{prefix}; pass --overwrite to replace")
    assert {k: s3.head_object(Bucket="bucket", Key=f"{prefix}/{k}")["ETag"] for k in FINAL} == before
    assert _keys(s3, prefix) == FINAL  # the refused run left no lock

    code, out = invoke("run", scene, "--model", model, "-o", f"s3://bucket/{prefix}", *ARGS, "--overwrite")
    assert code == 0, out
    _finished_exactly(s3, prefix, reference, tmp_path)


@pytest.mark.timeout(600)
def test_local_cluster_workers_in_their_own_folders_write_the_store_in_s3(
    s3, scene, model, reference, tmp_path, monkeypatch
):
    """The client runs in an empty folder and passes URLs; each worker works in a folder of its own."""
    s3.upload_file(str(scene), "bucket", "scenes/scene.tif")
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    monkeypatch.chdir(client_dir)
    prefix = _prefix()
    args = ("run", "s3://bucket/scenes/scene.tif", "--model", model, "-o", f"s3://bucket/{prefix}")
    code, out = invoke(*args, "--scheduler", "local:2", *ARGS, "--keep-intermediate")
    assert code == 0, out
    keys = _keys(s3, prefix)
    assert [k for k in keys if not k.startswith("scene.zarr/")] == FINAL
    done = [k for k in keys if k.startswith("scene.zarr/done/c/")]
    assert len(done) == 20  # every block's done-marker, written by the workers into the bucket
    assert not list(client_dir.iterdir()), "the run wrote into the client's working directory"
    objects.remove_prefix(f"s3://bucket/{prefix}/scene.zarr")
    _finished_exactly(s3, prefix, reference, tmp_path)


def test_local_cluster_workers_for_s3_outputs_each_have_a_working_directory_of_their_own(s3, tmp_path, monkeypatch):
    from geoseg.pipeline.scheduler import Runner

    monkeypatch.chdir(tmp_path)
    cfg = RunConfig(scene="s3://bucket/x.tif", model="m.pt", outdir="s3://bucket/out", scheduler="local:2")
    with Runner(cfg) as runner:
        cwds = runner.client.run(os.getcwd)
    assert len(set(cwds.values())) == 2 and str(tmp_path) not in cwds.values()
    scratch = Path(os.path.commonpath(list(cwds.values())))
    while not scratch.name.startswith("geoseg-workers-"):  # each worker's folder is inside the cluster's scratch
        assert scratch != scratch.parent, cwds
        scratch = scratch.parent
    assert not scratch.exists()  # removed with the cluster


# -- killed and concurrent runs ---------------------------------------------------------------------


@pytest.mark.timeout(600)
@pytest.mark.parametrize("point", ["segment:3", "export"])
def test_sigkill_leaves_no_final_object_and_the_rerun_resumes_identically(
    s3, scene, model, reference, tmp_path, point, monkeypatch
):
    import tempfile

    staging = tmp_path / "tmp"
    staging.mkdir()
    monkeypatch.setenv("TMPDIR", str(staging))  # the killed run's staging folder
    monkeypatch.setattr(tempfile, "tempdir", str(staging))  # the rerun's
    prefix = _prefix()
    args = ["run", scene, "--model", model, "-o", f"s3://bucket/{prefix}", *ARGS]
    first, marker = start(*args, cwd=tmp_path, failpoint=point)
    wait_for(first, marker)
    if point.startswith("segment"):
        # The first run holds the lock: a second one is refused at once, and removes nothing.
        second = subprocess.run(
            [sys.executable, "-m", "geoseg", *map(str, args)], capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 75
        assert second.stderr.strip() == (
            f"Error: another geoseg run is writing scene.tif into s3://bucket/{prefix}; "
            f"wait for it to finish (pid {first.pid})"
        )
    os.kill(first.pid, signal.SIGKILL)
    assert_tree_ends(first)
    keys = _keys(s3, prefix)
    assert not set(keys) & set(FINAL), keys  # nothing at a final key
    assert any(k.startswith("scene.zarr/done/c/") for k in keys)  # the store holds finished blocks
    assert ".scene.lock" in keys  # the killed run's lock, stale now
    left = [p.name for p in staging.iterdir()]  # SIGKILL leaves the staging folder: the rerun removes it
    assert len(left) == 1 and left[0].startswith(f"geoseg-out-{first.pid}-"), left
    code, out = invoke(*args)  # the same command, on the same host: takes over the dead run's lock
    assert code == 0, out
    report = _finished_exactly(s3, prefix, reference, tmp_path)
    assert not list(staging.iterdir()), "the killed run's staging folder is left"
    resumed = report["grid"]["resumed_blocks"]
    assert resumed == 20 if point == "export" else 0 < resumed < 20


# -- the lock object ----------------------------------------------------------------------------------


def _lock_record(**fields) -> bytes:
    return json.dumps({"host": "elsewhere", "pid": 1, "heartbeat": time.time(), "token": "t"} | fields).encode()


def test_a_live_lock_on_another_host_refuses_and_a_silent_one_is_taken_over(s3):
    from geoseg._remote_lock import STALE_S, hold_object

    url = f"s3://bucket/{_prefix()}/.scene.lock"
    objects.write_bytes(url, _lock_record())
    with pytest.raises(LockedError, match=r"^busy \(pid 1 on elsewhere\)$"), hold_object(url, "busy"):
        pass
    assert json.loads(objects.read_bytes(url)[0])["host"] == "elsewhere"  # untouched
    objects.write_bytes(url, _lock_record(heartbeat=time.time() - STALE_S - 5))
    with hold_object(url, "busy"):
        holder = json.loads(objects.read_bytes(url)[0])
        assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
    assert not objects.exists(url)  # released


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over(s3):
    from geoseg._remote_lock import hold_object

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    url = f"s3://bucket/{_prefix()}/.scene.lock"
    objects.write_bytes(url, _lock_record(host=socket.gethostname(), pid=dead.pid))
    with hold_object(url, "busy"):
        assert json.loads(objects.read_bytes(url)[0])["pid"] == os.getpid()
        with pytest.raises(LockedError, match=rf"^busy \(pid {os.getpid()}\)$"), hold_object(url, "busy"):
            pass  # this process's own live lock refuses a second holder


# -- uploads -------------------------------------------------------------------------------------------


def test_a_large_file_is_uploaded_in_parts_as_one_object(s3, tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.setattr(objects, "SINGLE_PUT_BYTES", 1 << 20)
    monkeypatch.setattr(objects, "PART_BYTES", 5 << 20)  # S3's smallest part
    data = np.random.default_rng(0).integers(0, 256, (11 << 20) + 5, dtype=np.uint8).tobytes()
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    url = f"s3://bucket/{_prefix()}/big.bin"
    objects.upload_file(path, url)
    etag = objects.head(url)["e_tag"]
    assert etag.strip('"').endswith("-3")  # S3's ETag of a three-part upload
    assert objects.read_bytes(url)[0] == data
    with pytest.raises(GeosegIOError, match="already exists; pass --overwrite"):
        objects.upload_file(path, url, overwrite=False)
    small = tmp_path / "small.bin"
    small.write_bytes(b"x")
    with pytest.raises(GeosegIOError, match="already exists; pass --overwrite"):
        objects.upload_file(small, url, overwrite=False)  # refused by the server (If-None-Match)
    assert objects.head(url)["e_tag"] == etag
    assert objects.remove_prefix(url.rsplit("/", 1)[0]) == 1 and not objects.exists(url)


# -- configuration and errors --------------------------------------------------------------------------


def test_urls_join_split_and_endpoints_from_either_set_of_variables(monkeypatch):
    assert objects.join("s3://b/a/", "x.zarr", "done") == "s3://b/a/x.zarr/done"
    assert objects.split("s3://b") == ("b", "")
    assert objects.is_remote_dir("s3://b/p") and not objects.is_remote_dir("out") and not objects.is_remote_dir(None)
    for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_S3_ENDPOINT", "AWS_HTTPS"):
        monkeypatch.delenv(k, raising=False)
    assert objects.endpoint() is None
    monkeypatch.setenv("AWS_S3_ENDPOINT", "minio:9000")
    assert objects.endpoint() == "https://minio:9000"
    monkeypatch.setenv("AWS_HTTPS", "NO")
    assert objects.endpoint() == "http://minio:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://other:9000/")
    assert objects.endpoint() == "http://other:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.example:443")
    assert objects.endpoint() == "https://s3.example:443"


@pytest.mark.parametrize("outdir", ["https://example.org/out", "/vsis3/bucket/out", "s3://"])
def test_outputs_go_to_a_folder_or_s3_only(outdir):
    from geoseg.errors import ConfigError

    with pytest.raises(ConfigError, match="outputs go to a local folder or to s3://bucket"):
        RunConfig.build(scene="a.tif", model="m.pt", outdir=outdir)
    assert RunConfig(scene="a.tif", model="m.pt", outdir="s3://b/p").outdir == "s3://b/p"
    assert RunConfig(scene="a.tif", model="m.pt", outdir="out").outdir == Path("out")


def test_a_missing_bucket_is_one_line_without_secrets(s3, scene, model, tmp_path):
    code, out = invoke("run", scene, "--model", model, "-o", "s3://no-such-bucket/out", *ARGS)
    assert code == 1 and "Traceback" not in out, out
    lines = out.strip().splitlines()
    assert len(lines) == 1 and "bucket no-such-bucket does not exist" in lines[0], lines
    assert SECRET not in out
    with pytest.raises(GeosegIOError, match="bucket no-such-bucket does not exist"):
        objects.upload_file(scene, "s3://no-such-bucket/scene.tif")


def test_an_unreachable_endpoint_is_one_line_without_secrets(s3, scene, model, monkeypatch):
    monkeypatch.setenv("AWS_S3_ENDPOINT", f"127.0.0.1:{_free_port()}")  # nothing listens there
    code, out = invoke("run", scene, "--model", model, "-o", "s3://bucket/out", *ARGS)
    assert code == 1 and "Traceback" not in out, out
    lines = out.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the S3 endpoint http://127.0.0.1:" in lines[0], lines
    assert "AWS_ENDPOINT_URL" in lines[0] and SECRET not in out
