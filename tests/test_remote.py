"""Remote scenes: URLs over a loopback HTTP server with Range requests, s3:// keys on a loopback S3 API."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geoseg.config import RunConfig
from geoseg.errors import SceneNotFoundError
from geoseg.pipeline import output_paths
from geoseg.raster import file_checksum, open_scene, read_window
from geoseg.remote import display_name, gdal_path, is_remote, remote_env, scene_name
from tests.conftest import assert_same_outputs, invoke, smooth_image
from tests.rangeserver import RangeServer

# -- names and paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scene", "gdal", "shown", "name"),
    [
        ("http://127.0.0.1:8765/scene.tif", "/vsicurl/http://127.0.0.1:8765/scene.tif", None, "scene.tif"),
        (
            "https://u:pw@example.org/a/b/scene.tif?X-Amz-Signature=abc&t=1#frag",
            "/vsicurl/https://u:pw@example.org/a/b/scene.tif?X-Amz-Signature=abc&t=1#frag",
            "https://example.org/a/b/scene.tif",
            "scene.tif",
        ),
        ("HTTPS://example.org/get?id=7", "/vsicurl/HTTPS://example.org/get?id=7", "https://example.org/get", "get"),
        ("s3://bucket/tiles/2026/scene.tif", "/vsis3/bucket/tiles/2026/scene.tif", None, "scene.tif"),
        ("/vsis3/bucket/scene.tif", "/vsis3/bucket/scene.tif", "s3://bucket/scene.tif", "scene.tif"),
        (
            "/vsicurl/http://[::1]:9000/x/scene.tiff?sig=1",
            "/vsicurl/http://[::1]:9000/x/scene.tiff?sig=1",
            "http://[::1]:9000/x/scene.tiff",
            "scene.tiff",
        ),
        (
            "/vsicurl?max_retry=3&url=http%3A%2F%2Fexample.org%2Fscene.tif%3Ftoken%3Dx",
            "/vsicurl?max_retry=3&url=http%3A%2F%2Fexample.org%2Fscene.tif%3Ftoken%3Dx",
            "http://example.org/scene.tif",
            "scene.tif",
        ),
    ],
)
def test_scene_strings_map_to_gdal_paths_and_names_without_secrets(scene, gdal, shown, name):
    assert is_remote(scene)
    assert gdal_path(scene) == gdal
    assert display_name(scene) == (shown or scene)
    assert display_name(gdal) == (shown or scene)
    assert scene_name(scene) == name
    for secret in ("pw", "Signature", "token", "frag", "sig="):
        assert secret not in display_name(scene)


def test_local_paths_are_untouched():
    assert not is_remote("data/scene.tif") and not is_remote(Path("/data/s3.tif"))
    assert gdal_path("data/scene.tif") == "data/scene.tif"
    assert display_name("/data/x?y.tif") == "/data/x?y.tif"
    assert scene_name(Path("/data/scene.tif")) == "scene.tif"


def test_output_stem_of_a_url_drops_the_query(tmp_path):
    paths = output_paths("https://example.org/t/scene.tif?token=SECRET", tmp_path)
    assert paths["classes"] == tmp_path / "scene.classes.tif"
    assert paths["report"] == tmp_path / "scene.run.json"
    assert output_paths("s3://b/k/ortho.TIFF", tmp_path)["landcover"] == tmp_path / "ortho.landcover.gpkg"
    assert output_paths(tmp_path / "scene.tif", tmp_path) == paths  # local scenes as before


def test_run_config_keeps_urls_as_given():
    url = "http://127.0.0.1:8765/dir/scene.tif?token=SECRET"
    assert RunConfig(scene=url, model="m.pt").scene == url
    assert RunConfig(scene="s3://b/k.tif", model="m.pt").scene == "s3://b/k.tif"
    assert RunConfig(scene="dir/scene.tif", model="m.pt").scene == Path("dir/scene.tif")


def test_remote_env_fills_defaults_but_respects_the_user(monkeypatch):
    from rasterio.env import getenv

    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "9")
    monkeypatch.delenv("GDAL_DISABLE_READDIR_ON_OPEN", raising=False)
    monkeypatch.delenv("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", raising=False)
    with rasterio.Env(VSI_CACHE="FALSE"), remote_env():
        env = getenv()
        assert env["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
        assert env["GDAL_HTTP_MERGE_CONSECUTIVE_RANGES"] == "YES"
        assert env["VSI_CACHE"] == "FALSE"  # the enclosing Env's
        assert "GDAL_HTTP_MAX_RETRY" not in env  # the environment's 9 stands
        assert "CPL_VSIL_CURL_ALLOWED_EXTENSIONS" not in env


# -- over HTTP ------------------------------------------------------------------------------------

SIDE = 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RangeServer, Path]]:
    """A 1024² tiled COG (512² internal tiles, 256² would make GDAL merge most of them anyway) on a Range server."""
    root = tmp_path_factory.mktemp("www")
    path = root / "scene.tif"
    profile = {
        "driver": "COG",
        "width": SIDE,
        "height": SIDE,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": Affine(0.25, 0, 500_000, 0, -0.25, 5_500_000),
        "blocksize": 256,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(smooth_image(SIDE, SIDE, seed=5))
    with RangeServer(root) as server:
        yield server, path


def test_windowed_reads_fetch_only_their_tiles(served):
    server, path = served
    url = server.url("scene.tif") + "?token=SECRET"
    info = open_scene(url)
    assert info.path == gdal_path(url) and (info.width, info.height) == (SIDE, SIDE)
    server.reset()
    data, valid = read_window(info.path, -10, -10, 100, 100, (1, 2, 3))
    local, _ = read_window(str(path), -10, -10, 100, 100, (1, 2, 3))
    np.testing.assert_array_equal(data, local)
    assert valid.all()
    assert server.bytes_sent < path.stat().st_size / 4, "a corner window read more than its tiles"


def test_checksum_is_the_objects_etag_and_size(served):
    server, path = served
    server.reset()
    checksum = file_checksum(server.url("scene.tif") + "?token=SECRET")
    assert checksum.startswith("etag:") and checksum.endswith(f":size:{path.stat().st_size}")
    assert server.bytes_sent < 100_000, "the checksum read the object instead of asking for its identity"
    assert file_checksum(path).startswith("sha256:")


def test_missing_url_is_one_line_naming_the_url_without_query(served, tmp_path, fcn_model):
    server, _ = served
    url = server.url("nope.tif") + "?token=SECRET"
    with pytest.raises(SceneNotFoundError, match=r"scene not found: http://127\.0\.0\.1:\d+/nope\.tif; check"):
        open_scene(url)
    code, out = invoke("run", url, "-m", fcn_model, "-o", tmp_path / "out", "-q")
    assert code == 1
    assert "nope.tif" in out and "GDAL_HTTP_" in out and "SECRET" not in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1


def test_run_over_http_equals_the_local_run(served, tmp_path, fcn_model):
    server, path = served
    local, remote = tmp_path / "local", tmp_path / "remote"
    args = ("-m", fcn_model, "--chunk", "512", "-q")
    code, out = invoke("run", path, "-o", local, *args)
    assert code == 0, out
    server.reset()
    log = tmp_path / "run.log"
    url = server.url("scene.tif") + "?token=SECRET"
    code, out = invoke("run", url, "-o", remote, *args, "--log-file", log)
    assert code == 0, out
    ratio = server.bytes_sent / path.stat().st_size
    print(f"\nHTTP run of a {SIDE}² COG (chunk 512): {server.bytes_sent} bytes served, {ratio:.2f}x the file size")
    assert ratio < 3
    assert_same_outputs(local, remote)
    text = (remote / "scene.run.json").read_text()
    report = json.loads(text)
    assert report["scene"]["path"] == server.url("scene.tif")
    assert report["scene"]["checksum"].startswith("etag:")
    assert report["parameters"]["scene"] == server.url("scene.tif")
    assert "SECRET" not in text and "token" not in text
    assert "SECRET" not in log.read_text() and "SECRET" not in out
    assert log.read_text().strip(), "the run logged nothing to check"


# -- over S3 --------------------------------------------------------------------------------------


@pytest.fixture
def s3_scene(s3_server: str, served, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The served COG uploaded to s3://bucket/scene.tif, with GDAL pointed at the loopback S3 API."""
    import boto3

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-value",
        "AWS_REGION": "us-east-1",
        "AWS_S3_ENDPOINT": s3_server,
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    _, path = served
    s3 = boto3.client("s3", endpoint_url=f"http://{s3_server}", region_name="us-east-1")
    if "bucket" not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket="bucket")
    s3.upload_file(str(path), "bucket", "scene.tif")
    return path


def test_run_from_s3_equals_the_local_run(s3_scene, tmp_path, fcn_model):
    local, remote = tmp_path / "local", tmp_path / "s3"
    args = ("-m", fcn_model, "--chunk", "512", "-q")
    assert invoke("run", s3_scene, "-o", local, *args)[0] == 0
    log = tmp_path / "run.log"
    code, out = invoke("run", "s3://bucket/scene.tif", "-o", remote, *args, "--log-file", log)
    assert code == 0, out
    assert_same_outputs(local, remote)
    text = (remote / "scene.run.json").read_text()
    report = json.loads(text)
    assert report["scene"]["path"] == "s3://bucket/scene.tif"
    assert report["scene"]["checksum"] == f"etag:{_etag(s3_scene)}:size:{s3_scene.stat().st_size}"
    assert "testing-secret-value" not in text + log.read_text() + out


def _etag(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()  # S3's ETag of a single-part upload


def test_missing_s3_key_is_one_line(s3_scene, tmp_path, fcn_model):
    code, out = invoke("run", "s3://bucket/missing.tif", "-m", fcn_model, "-o", tmp_path / "out", "-q")
    assert code == 1
    assert out.strip().count("\n") == 0 and "Traceback" not in out
    assert "s3://bucket/missing.tif" in out and "AWS_" in out
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in out


def test_batch_maps_a_url_once_then_skips_it(served, tmp_path, fcn_model):
    import yaml

    from geoseg.batch import load_job, run_batch, scene_paths

    server, _ = served
    url = server.url("scene.tif") + "?token=SECRET"
    job_file = tmp_path / "job.yaml"
    values = {"region": "r", "scenes": [url], "model": str(fcn_model), "output": "out", "merge": False}
    job_file.write_text(yaml.safe_dump(values))
    job = load_job(job_file)
    assert scene_paths(job) == [url]  # the "?" of a query is no glob
    first = run_batch(job)
    assert [(o.scene, o.status) for o in first.scenes] == [("scene", "done")]
    assert first.scenes[0].path == server.url("scene.tif")
    assert (tmp_path / "out" / "scenes" / "scene.classes.tif").is_file()
    server.reset()
    second = run_batch(job)
    assert [o.status for o in second.scenes] == ["skipped"]  # same ETag and size: current
    assert server.bytes_sent < 100_000
    assert "SECRET" not in first.manifest.read_text()


def test_info_describes_a_served_scene(served):
    server, _ = served
    code, out = invoke("info", server.url("scene.tif") + "?token=SECRET", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["path"] == server.url("scene.tif") and "SECRET" not in out
    assert "1024" in json.dumps(data)
