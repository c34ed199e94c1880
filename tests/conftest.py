"""Shared fixtures and helpers: tiny GeoTIFF writers, small model checkpoints, the shared sample data,
the command line in-process (:func:`invoke`) or as a process stopped at a failpoint (:func:`start`),
and output comparisons."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyogrio
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the project; tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample data folder {SHARED_DATA} is absent (it sits beside the project checkout)")
    return SHARED_DATA


def write_tif(
    path: Path,
    data: np.ndarray,
    *,
    crs: Any = "EPSG:32633",
    transform: Any = None,
    nodata: float | None = None,
    **profile: Any,
) -> Path:
    """Write `data` (bands, H, W) as a GeoTIFF; 0.5 m pixels at a UTM origin by default."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    count, h, w = data.shape
    prof = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": count,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform or Affine(0.5, 0, 500000.0, 0, -0.5, 5800000.0),
        "nodata": nodata,
    }
    prof.update(profile)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
    return path


@pytest.fixture
def make_tif(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(10_000))

    def make(data: np.ndarray, name: str | None = None, **kw: Any) -> Path:
        return write_tif(tmp_path / (name or f"scene{next(counter)}.tif"), data, **kw)

    return make


def smooth_image(h: int, w: int, bands: int = 3, seed: int = 0, dtype: str = "uint8") -> np.ndarray:
    """A seeded image with large smooth structures plus noise (models give varied classes on it)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    zoom = 40
    base = rng.random((bands, h // zoom + 2, w // zoom + 2))
    img = np.stack([ndimage.zoom(b, zoom, order=1)[:h, :w] for b in base])
    img = img * 255 + rng.normal(0, 6, img.shape)
    return img.clip(0, 255).astype(dtype)


@pytest.fixture(scope="session")
def fcn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained FCN-8s / ResNet-18 checkpoint (3 bands): the cheapest model for pipeline tests."""
    from geoseg.predict.checkpoint import init_checkpoint

    path = tmp_path_factory.mktemp("models") / "fcn18.pt"
    init_checkpoint(path, arch="fcn", encoder="resnet18", in_channels=3, seed=1)
    return path


@pytest.fixture(scope="session")
def fcn_model_4band(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from geoseg.predict.checkpoint import init_checkpoint

    path = tmp_path_factory.mktemp("models") / "fcn18_rgbn.pt"
    init_checkpoint(path, arch="fcn", encoder="resnet18", in_channels=4, seed=1)
    return path


def invoke(*args: object) -> tuple[int, str]:
    """Exit code and output of `geoseg ARGS`, in this process; an uncaught exception counts as a traceback."""
    from geoseg.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(result.exception))
        return result.exit_code, f"{result.output}\nTraceback (uncaught):\n{tb}"
    return result.exit_code, result.output


@pytest.fixture(autouse=True, scope="session")
def _private_model_library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads or writes the user's model library (installed models, exported graphs); tests may set their own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEOSEG_HOME", str(tmp_path_factory.mktemp("geoseg-home")))
        yield


_started: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _kill_leftovers():
    """Whatever a failed test left running is killed (its whole session), so it cannot disturb the next."""
    yield
    while _started:
        proc = _started.pop()
        for p in session(proc.pid):
            p.kill()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def start(*args: object, cwd: Path, failpoint: str | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    """`geoseg ARGS` in its own session, stopping at `failpoint`; returns the process and the point's marker file."""
    marker = cwd / f"reached-{failpoint}-{time.monotonic_ns()}"
    env = dict(os.environ)
    if failpoint:
        env |= {"GEOSEG_FAILPOINT": failpoint, "GEOSEG_FAILPOINT_FILE": str(marker)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "geoseg", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a session of its own: every process it starts is found by its session id
    )
    _started.append(proc)
    return proc, marker


def wait_for(proc: subprocess.Popen[bytes], marker: Path, timeout: float = 240) -> None:
    t0 = time.monotonic()
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"ended before reaching its failpoint: {proc.stderr.read().decode()[-2000:]}")
        assert time.monotonic() - t0 < timeout, "failpoint not reached"
        time.sleep(0.05)


def session(sid: int) -> list[psutil.Process]:
    """Live processes of session `sid` (zombies excluded: they hold no memory and no pipe)."""
    found = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def features(path: Path) -> tuple[list[bytes], list[np.ndarray]]:
    _, _, wkb, cols = pyogrio.raw.read(path, layer="landcover")
    return list(wkb), cols


def assert_same_outputs(a: Path, b: Path, stem: str = "scene") -> None:
    assert (a / f"{stem}.classes.tif").read_bytes() == (b / f"{stem}.classes.tif").read_bytes()
    wa, ca = features(a / f"{stem}.landcover.gpkg")
    wb, cb = features(b / f"{stem}.landcover.gpkg")
    assert wa == wb
    for x, y in zip(ca, cb, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not list(b.glob(".*part*")), "temporary files left behind"


# -- a loopback S3 API -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A moto S3 API on 127.0.0.1 (``moto_server``, from the dev extra), stopped at the end."""
    exe = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not Path(exe).exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


#: The secret key the loopback S3 API is given: no output, log or message may hold it.
SECRET = "testing-secret-value"


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A boto3 client of the loopback S3 API holding `bucket`, with GDAL's variables (only) pointing at it."""
    import boto3

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1",
        "AWS_S3_ENDPOINT": s3_server,
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(k, raising=False)
    client = boto3.client("s3", endpoint_url=f"http://{s3_server}", region_name="us-east-1")
    if "bucket" not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket="bucket")
    yield client
