"""Never a wrong map with exit 0: killed runs, concurrent runs, full disks, signals, incomplete stores.

Runs are stopped at named points (``GEOSEG_FAILPOINT``, see ``geoseg/_failpoints.py``) rather than by
polling for a stage and hoping it lasts: the run waits at the point until the test kills or signals it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from geoseg.cli import main
from geoseg.predict.checkpoint import init_checkpoint
from geoseg.synthetic import SceneSpec, write_scene
from tests.conftest import assert_same_outputs, invoke, session, start, wait_for

ARGS = ["--chunk", 128, "--workers", 2, "-q"]


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
    """The outputs of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    code, text = invoke("run", scene, "--model", model, "-o", out, *ARGS)
    assert code == 0, text
    return out


def assert_tree_ends(proc: subprocess.Popen[bytes], *, within: float = 5.0) -> tuple[bytes, bytes]:
    """The process and everything it started end within `within` s; its pipes close (no hung caller)."""
    out, err = proc.communicate(timeout=within + 25)  # hangs while any descendant holds stdout/stderr
    t0 = time.monotonic()
    while session(proc.pid) and time.monotonic() - t0 < within:
        time.sleep(0.1)
    left = [(p.pid, " ".join(p.cmdline())[:120]) for p in session(proc.pid)]
    assert not left, f"processes of the run still alive {within} s after it ended: {left}"
    return out, err


# --- SIGKILL and SIGTERM leave no process behind, and the rerun resumes -------------------------------------------


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("point", "scheduler"),
    [
        ("segment", "threads"),
        ("vectorize", "threads"),
        ("export", "threads"),
        ("segment", "local:2"),
        ("vectorize", "local:2"),
    ],
)
def test_sigkill_leaves_no_process_and_the_rerun_is_identical(tmp_path, scene, model, reference, point, scheduler):
    out = tmp_path / "out"
    args = ["run", scene, "--model", model, "-o", out, *ARGS, "--scheduler", scheduler]
    proc, marker = start(*args, cwd=tmp_path, failpoint=point)
    wait_for(proc, marker)
    if point == "vectorize" or scheduler.startswith("local"):
        assert len(session(proc.pid)) > 1  # worker processes are running (the vector cells', or the cluster's)
    os.kill(proc.pid, signal.SIGKILL)  # the main process only: what an OOM killer or `kill -9 PID` does
    assert_tree_ends(proc)
    assert not (out / "scene.run.json").exists()
    code, text = invoke(*args)
    assert code == 0, text
    report = json.loads((out / "scene.run.json").read_text())
    if point != "segment":
        assert report["grid"]["resumed_blocks"] == 20  # every block came from the store
    assert_same_outputs(reference, out)


@pytest.mark.timeout(600)
def test_sigterm_in_the_vector_stage_exits_130_cleanly_and_resumes(tmp_path, scene, model, reference):
    out = tmp_path / "out"
    args = ["run", scene, "--model", model, "-o", out, *ARGS]
    proc, marker = start(*args, cwd=tmp_path, failpoint="vectorize")
    wait_for(proc, marker)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = assert_tree_ends(proc)
    assert proc.returncode == 130
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "run the same command again" in lines[0], lines
    assert not list(out.glob(".*part*")), "a temporary output was left behind"
    assert not (out / "scene.landcover.gpkg").exists()
    code, text = invoke(*args)
    assert code == 0, text
    assert_same_outputs(reference, out)


@pytest.mark.timeout(600)
def test_batch_killed_mid_scene_leaves_no_process(tmp_path, scene, model):
    import yaml

    (tmp_path / "scenes").mkdir()
    for name in ("a", "b"):
        (tmp_path / "scenes" / f"{name}.tif").write_bytes(scene.read_bytes())
    job = tmp_path / "job.yaml"
    values = {"scenes": ["scenes/*.tif"], "model": str(model), "workers": 2, "run": {"chunk": 128}}
    job.write_text(yaml.safe_dump({"region": "r", "output": "out", **values}))
    proc, marker = start("batch", job, "-q", cwd=tmp_path, failpoint="vectorize")
    wait_for(proc, marker)
    os.kill(proc.pid, signal.SIGKILL)
    assert_tree_ends(proc)
    code, text = invoke("batch", job, "-q")
    assert code == 0, text
    manifest = json.loads((tmp_path / "out" / "r.manifest.json").read_text())
    assert [s["status"] for s in manifest["scenes"]] == ["done", "done"]
    assert manifest["scenes"][0]["resumed_blocks"] == 20
    a, b = (tmp_path / "out" / "scenes" / f"{n}.classes.tif" for n in "ab")
    assert a.read_bytes() == b.read_bytes()


# --- two runs of one scene into one folder ------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_a_second_run_into_the_same_folder_is_refused_and_the_first_is_intact(tmp_path, scene, model, reference):
    out = tmp_path / "out"
    args = ["run", scene, "--model", model, "-o", out, *ARGS]
    first, marker = start(*args, cwd=tmp_path, failpoint="segment")
    wait_for(first, marker)
    second = subprocess.run(
        [sys.executable, "-m", "geoseg", *map(str, args)], capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 75
    assert second.stderr.strip() == (
        f"Error: another geoseg run is writing scene.tif into {out}; wait for it to finish (pid {first.pid})"
    )
    assert (out / "scene.zarr").is_dir()  # the second run removed nothing of the first's
    os.kill(first.pid, signal.SIGKILL)
    assert_tree_ends(first)
    code, text = invoke(*args)  # the lock died with its holder
    assert code == 0, text
    assert_same_outputs(reference, out)


def test_an_incomplete_store_is_never_exported(tmp_path, scene, model):
    """A store that lost blocks (removed or emptied under a run) fails the export instead of writing nodata."""
    from geoseg.errors import GeosegIOError
    from geoseg.export import write_class_cog
    from geoseg.raster import open_scene
    from geoseg.store import WorkStore
    from geoseg.tiling import BlockPlan, TileGrid

    info = open_scene(scene)
    plan = BlockPlan.from_chunk(TileGrid(info.height, info.width, tile=128, overlap=64), 128)
    store, _ = WorkStore.prepare(tmp_path / "s.zarr", plan, {"x": 1})
    for block in list(plan.blocks())[:-1]:
        shape = (block.core.height, block.core.width)
        store.write_block(block, np.zeros(shape, np.uint8), np.zeros(shape, np.uint8))
    with pytest.raises(GeosegIOError, match=r"holds 19 of 20 finished blocks"):
        write_class_cog(store, plan, info, tmp_path / "c.tif", __import__("geoseg").ISPRS)
    assert not list(tmp_path.glob("*.tif")) and not list(tmp_path.glob(".*part*"))


# --- files named as outputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sidecar", ["scene.classes.qml", "scene.classes.tif.aux.xml"])
def test_an_existing_sidecar_is_not_replaced_without_overwrite(tmp_path, scene, model, sidecar):
    out = tmp_path / "out"
    out.mkdir()
    (out / sidecar).write_text("mine")
    code, text = invoke("run", scene, "--model", model, "-o", out, *ARGS)
    assert code == 1 and sidecar in text and "--overwrite" in text
    assert (out / sidecar).read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == [sidecar]


def test_a_failed_start_leaves_no_store_and_no_new_folder(tmp_path, scene, model, monkeypatch):
    from geoseg.errors import GeosegIOError
    from geoseg.pipeline import blocks

    def broken(*a, **k):
        raise GeosegIOError("simulated read error")

    monkeypatch.setattr(blocks, "read_window", broken)
    out = tmp_path / "new" / "out"
    result = CliRunner().invoke(main, ["run", str(scene), "--model", str(model), "-o", str(out), "-q"])
    assert result.exit_code != 0
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


@pytest.mark.parametrize("option", ["--min-area", "--simplify"])
@pytest.mark.parametrize("command", ["run", "vectorize"])
def test_negative_cleaning_thresholds_are_usage_errors(tmp_path, scene, model, option, command):
    args = [scene, "--model", model] if command == "run" else [scene]
    code, text = invoke(command, *args, option, -5)
    assert code == 2 and option in text, text


def test_rasterio_reads_every_output(reference):
    with rasterio.open(reference / "scene.classes.tif") as ds:
        assert ds.read(1).max() < 6


# --- a full disk ------------------------------------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs of its own (root only; skips elsewhere)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the full-disk sweep needs root on Linux")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill_to(mnt: Path, free: int) -> None:
    """Leave about `free` bytes free on `mnt` (one filler file; tmpfs counts whole pages)."""
    filler = mnt / "filler"
    filler.unlink(missing_ok=True)
    size = max(0, os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize - free)
    with open(filler, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * size)  # real pages, not a sparse file


def _disk_sweep(tmpfs: Path, scene: Path, model: Path, reference: Path, levels: int) -> dict[str, int]:
    """Run at `levels` amounts of free space; each ends complete and identical, or in one line, and resumes."""
    import shutil

    args = ["run", scene, "--model", model, *ARGS]
    outputs = ("scene.classes.tif", "scene.landcover.gpkg", "scene.run.json")
    # What a run takes on this disk at most: its outputs, its store, and the COG's scratch copy.
    assert invoke(*args, "-o", tmpfs / "out", "--keep-intermediate")[0] == 0
    used = sum(p.stat().st_blocks * 512 for p in (tmpfs / "out").rglob("*") if p.is_file())
    peak = used + (tmpfs / "out" / "scene.classes.tif").stat().st_blocks * 512
    shutil.rmtree(tmpfs / "out")
    outcomes = {"ok": 0, "failed": 0}
    for free in np.linspace(0, 1.5 * peak, levels).astype(int):  # the GeoPackage's journal needs more for a while
        out = tmpfs / "out"
        _fill_to(tmpfs, int(free))
        code, text = invoke(*args, "-o", out)
        if code == 0:
            outcomes["ok"] += 1
            assert_same_outputs(reference, out)
        else:
            outcomes["failed"] += 1
            lines = text.strip().splitlines()
            assert code == 1 and len(lines) == 1, f"{free} B free: {text}"
            assert lines[0].startswith("Error: cannot ") and "no space left on device" in lines[0], lines[0]
            print(f"{free:>9} B free: {lines[0][:160]}")
            for name in outputs:  # what is at a final path is complete
                if (out / name).exists():
                    assert (out / name).read_bytes() == (reference / name).read_bytes() or name.endswith(".json")
            (tmpfs / "filler").unlink()
            stored = (
                sum(1 for _ in (out / "scene.zarr" / "done").rglob("c/*/*")) if (out / "scene.zarr").exists() else 0
            )
            code, text = invoke(*args, "-o", out)  # the same command, after freeing space
            assert code == 0, f"{free} B free, then the rerun: {text}"
            assert json.loads((out / "scene.run.json").read_text())["grid"]["resumed_blocks"] == stored
            assert_same_outputs(reference, out)
        shutil.rmtree(out, ignore_errors=True)
    return outcomes


@pytest.mark.timeout(900)
def test_a_full_disk_ends_in_one_line_or_a_correct_output_and_resumes(tmpfs, scene, model, reference):
    outcomes = _disk_sweep(tmpfs, scene, model, reference, levels=14)
    assert outcomes["failed"] >= 6 and outcomes["ok"] >= 2, outcomes


def test_a_cog_export_onto_a_full_disk_fails_in_one_line_and_leaves_nothing(tmpfs, scene, tmp_path):
    """GDAL reports a full disk while flushing a TIFF only on its error stream: the read-back check catches it."""
    from geoseg import ISPRS
    from geoseg.errors import GeosegIOError
    from geoseg.export import write_class_cog
    from geoseg.raster import open_scene
    from geoseg.store import WorkStore
    from geoseg.tiling import BlockPlan, TileGrid

    info = open_scene(scene)
    plan = BlockPlan.from_chunk(TileGrid(info.height, info.width, tile=128, overlap=64), 128)
    store, _ = WorkStore.prepare(tmp_path / "s.zarr", plan, {"x": 1})
    rng = np.random.default_rng(0)
    for block in plan.blocks():  # noisy classes: a COG that does not compress to nothing
        shape = (block.core.height, block.core.width)
        store.write_block(block, rng.integers(0, 6, shape, dtype=np.uint8), np.zeros(shape, np.uint8))
    reference = write_class_cog(store, plan, info, tmp_path / "ref.tif", ISPRS)
    size = reference.stat().st_size
    results = []
    for free in range(0, 3 * size, max(4096, size // 12)):
        _fill_to(tmpfs, free)
        target = tmpfs / "c.tif"
        try:
            write_class_cog(store, plan, info, target, ISPRS)
        except GeosegIOError as exc:
            assert "no space left on device" in str(exc) and len(str(exc).splitlines()) == 1, exc
            assert not target.exists()
            results.append("failed")
        else:
            assert target.read_bytes() == reference.read_bytes()
            results.append("ok")
        assert not [p.name for p in tmpfs.iterdir() if p.name != "filler" and p.name.startswith(".")]
        for p in tmpfs.iterdir():
            if p.name != "filler":
                p.unlink()
    assert "failed" in results and results[-1] == "ok", results


# --- non-finite pixels ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_nodata_for_their_pixel_only(tmp_path, model, bad, caplog):
    from tests.conftest import smooth_image, write_tif

    img = smooth_image(512, 512).astype("float32")
    img[:, 300, 300] = bad
    img[1, 10, 400] = bad  # one band only
    scene = write_tif(tmp_path / "float.tif", img)
    code, text = invoke("run", scene, "--model", model, "-o", tmp_path / "out", "-q")
    assert code == 0, text
    with rasterio.open(tmp_path / "out" / "float.classes.tif") as ds:
        cls = ds.read(1)
    assert (cls == 255).sum() == 2 and cls[300, 300] == 255 and cls[10, 400] == 255
    assert "NaN or infinite pixels" in caplog.text


def test_batch_runs_a_scene_again_whose_class_cog_is_damaged(tmp_path, scene, model):
    import yaml

    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "a.tif").write_bytes(scene.read_bytes())
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"region": "r", "output": "out", "scenes": ["scenes/*.tif"], "model": str(model)}))
    assert invoke("batch", job, "-q")[0] == 0
    cog = tmp_path / "out" / "scenes" / "a.classes.tif"
    good = cog.read_bytes()
    cog.write_bytes(good[: len(good) * 3 // 4])  # what a full disk left before the export was checked
    code, text = invoke("batch", job, "-q")
    assert code == 0, text
    manifest = json.loads((tmp_path / "out" / "r.manifest.json").read_text())
    assert manifest["scenes"][0]["status"] == "done"  # mapped again, not "skipped"
    assert cog.read_bytes() == good


def test_read_errors_name_the_scenes_pixels_and_a_removed_file(tmp_path):
    from geoseg.errors import GeosegIOError, SceneNotFoundError
    from geoseg.raster import read_window
    from tests.conftest import smooth_image, write_tif

    scene = write_tif(tmp_path / "s.tif", smooth_image(256, 256), tiled=True, blockxsize=128, blockysize=128)
    size = scene.stat().st_size
    scene.write_bytes(scene.read_bytes()[: size - 2000])  # the last tile is cut off
    with pytest.raises(GeosegIOError, match=r"in rows 112\.\.255, cols 112\.\.255 .*truncated") as err:
        read_window(str(scene), 112, 112, 160, 160, (1, 2, 3))  # reaches 16 px past the scene's edges
    assert "-16" not in str(err.value) and "271" not in str(err.value)
    scene.unlink()
    with pytest.raises(SceneNotFoundError, match="was removed or moved during the run"):
        read_window(str(scene), 0, 0, 64, 64, (1, 2, 3))
