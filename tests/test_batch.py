"""Regional jobs: ``geoseg batch``, the regional layer, resume after SIGKILL, logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio import features as rio_features
from rasterio.windows import Window

from geoseg.batch import load_job, run_batch, scene_paths
from geoseg.errors import ConfigError
from geoseg.predict.checkpoint import init_checkpoint
from geoseg.synthetic import SceneSpec, write_scene
from tests.conftest import assert_same_outputs, features, invoke, start, wait_for


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "fcn.pt"
    init_checkpoint(path, arch="fcn", encoder="resnet18", tile_size=128, seed=1)
    return path


def split_scene(mosaic: Path, folder: Path, width: int) -> list[Path]:
    """Cut `mosaic` into scenes `width` px wide: neighbours on one grid, sharing an edge."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    with rasterio.open(mosaic) as src:
        data = src.read()
        for i, x0 in enumerate(range(0, src.width, width)):
            w = Window(x0, 0, min(width, src.width - x0), src.height)
            profile = dict(src.profile, width=int(w.width), transform=src.window_transform(w))
            path = folder / f"part{i}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(data[:, :, x0 : x0 + int(w.width)])
            out.append(path)
    return out


def write_job(path: Path, **values: object) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def region(tmp_path_factory, model):
    """Two neighbouring scenes and a corrupt one, run once as a batch (exact polygons)."""
    root = tmp_path_factory.mktemp("region")
    write_scene(SceneSpec(width=768, height=384, pixel_size=0.25, seed=21), root / "mosaic.tif")
    split_scene(root / "mosaic.tif", root / "scenes", 384)
    (root / "scenes" / "zz_broken.tif").write_bytes(b"II*\x00" + b"\x00" * 64)  # a truncated TIFF
    job = write_job(
        root / "job.yaml",
        region="test-region",
        scenes=["scenes/*.tif"],
        model=str(model),
        output="out",
        run={"min_area": 0, "simplify": 0},
        retries=2,
    )
    code, out = invoke("batch", job, "--log-file", root / "job.log", "--log-json")
    return root, job, code, out


def test_batch_finishes_the_good_scenes_and_reports_the_bad_one(region):
    root, _, code, out = region
    assert code == 1, out
    assert "zz_broken" in out and "1 of 3 scenes failed" in out and "Traceback" not in out
    manifest = json.loads((root / "out" / "test-region.manifest.json").read_text())
    status = {s["scene"]: s for s in manifest["scenes"]}
    assert status["part0"]["status"] == status["part1"]["status"] == "done"
    assert status["zz_broken"]["status"] == "failed" and "not a readable raster" in status["zz_broken"]["error"]
    assert status["zz_broken"]["attempts"] == 1  # an unreadable file is not retried: it would fail the same way
    assert manifest["counts"] == {"done": 2, "skipped": 0, "failed": 1, "interrupted": 0, "pending": 0}
    for name in ("part0", "part1"):
        assert (root / "out" / "scenes" / f"{name}.classes.tif").is_file()
        assert sum(status[name]["class_areas_m2"].values()) == pytest.approx(384 * 384 * 0.0625)
    # the summary table has a row per scene with km² per class
    assert "part0" in out and "km²" in out and "failed" in out


def test_rerun_after_fixing_the_bad_scene_processes_only_it(region, tmp_path):
    root, job, _, _ = region
    cogs = {n: (root / "out" / "scenes" / f"{n}.classes.tif").stat().st_mtime_ns for n in ("part0", "part1")}
    broken = root / "scenes" / "zz_broken.tif"
    write_scene(SceneSpec(width=256, height=256, pixel_size=0.25, seed=4), broken)
    try:
        code, out = invoke("batch", job, "-q")
        assert code == 0, out
        manifest = json.loads((root / "out" / "test-region.manifest.json").read_text())
        status = {s["scene"]: s["status"] for s in manifest["scenes"]}
        assert status == {"part0": "skipped", "part1": "skipped", "zz_broken": "done"}
        for name, mtime in cogs.items():  # current outputs are left alone
            assert (root / "out" / "scenes" / f"{name}.classes.tif").stat().st_mtime_ns == mtime
        # the regional layer now holds the third scene too
        scenes = set(pyogrio.read_dataframe(root / "out" / "test-region.landcover.gpkg", layer="landcover")["scene"])
        assert "zz_broken" in scenes
    finally:
        broken.write_bytes(b"II*\x00" + b"\x00" * 64)
        invoke("batch", job, "-q")  # back to the module's state for the other tests


def test_regional_layer_joins_polygons_across_the_scene_edge(region):
    """Count equals polygonising the mosaic of the scenes' class rasters; a valid, styled partition."""
    root, _, _, _ = region
    with (
        rasterio.open(root / "out" / "scenes" / "part0.classes.tif") as a,
        rasterio.open(root / "out" / "scenes" / "part1.classes.tif") as b,
    ):
        mosaic = np.concatenate([a.read(1), b.read(1)], axis=1)
        per_scene = sum(
            pyogrio.read_info(root / "out" / "scenes" / f"{n}.landcover.gpkg", layer="landcover")["features"]
            for n in ("part0", "part1")
        )
    expected = sum(1 for _ in rio_features.shapes(mosaic, mask=mosaic != 255, connectivity=4))
    _, _, wkb, cols = pyogrio.raw.read(root / "out" / "test-region.landcover.gpkg", layer="landcover")
    meta = pyogrio.read_info(root / "out" / "test-region.landcover.gpkg", layer="landcover")
    geoms = shapely.from_wkb(wkb)
    assert per_scene > expected  # regions were cut at the edge...
    assert len(geoms) == expected  # ...and joined again
    assert shapely.is_valid(geoms).all() and (shapely.get_type_id(geoms) == 3).all()
    assert shapely.area(geoms).sum() == pytest.approx(shapely.union_all(geoms).area, rel=1e-12)
    assert shapely.area(geoms).sum() == pytest.approx((mosaic != 255).sum() * 0.0625, rel=1e-12)
    fields = dict(zip(meta["fields"], cols, strict=True))
    assert set(fields) >= {"class_id", "class_name", "area_m2", "perimeter_m", "mean_confidence", "scene"}
    joined = fields["scene"] == "part0; part1"
    assert joined.any()
    np.testing.assert_allclose(fields["area_m2"], shapely.area(geoms), rtol=1e-9)
    np.testing.assert_allclose(fields["perimeter_m"], shapely.length(geoms), rtol=1e-9)
    layers = set(pyogrio.list_layers(root / "out" / "test-region.landcover.gpkg")[:, 0])
    assert {"landcover", "classes", "layer_styles", "runs"} <= layers


def test_json_log_has_a_line_per_scene_outcome(region):
    root, _, _, _ = region
    lines = [json.loads(line) for line in (root / "job.log").read_text().splitlines()]
    outcomes = {r["scene"]: r["status"] for r in lines if r.get("event") == "scene" and "status" in r}
    assert outcomes == {"part0": "done", "part1": "done", "zz_broken": "failed"}
    assert all({"time", "level", "logger", "message"} <= set(r) for r in lines)
    assert any(r.get("event") == "merge" and r["features"] > 0 for r in lines)


def test_changed_settings_remap_and_a_held_lock_refuses(region, tmp_path):
    from filelock import FileLock

    root, job, _, _ = region
    lock = FileLock(str(root / "out" / ".test-region.lock"))
    with lock:
        code, out = invoke("batch", job, "-q")
    assert code == 75 and "already running" in out
    # a dry run with other settings plans to remap the good scenes; it writes nothing
    other = load_job(job, run={"min_area": 0, "simplify": 0, "overlap": 32})
    before = (root / "out" / "test-region.manifest.json").read_text()
    result = run_batch(other, dry_run=True)
    assert {s.scene: s.status for s in result.scenes} == {
        "part0": "pending",
        "part1": "pending",
        "zz_broken": "pending",
    }
    assert (root / "out" / "test-region.manifest.json").read_text() == before


def test_unexpected_failures_are_retried(tmp_path, model, monkeypatch):
    import geoseg.pipeline

    write_scene(SceneSpec(width=128, height=128, pixel_size=0.25, seed=2), tmp_path / "a.tif")
    job = load_job(write_job(tmp_path / "j.yaml", region="r", scenes="a.tif", model=str(model), output="o", retries=2))
    real, calls = geoseg.pipeline.run, []

    def flaky(cfg, **kw):
        calls.append(1)
        if len(calls) < 3:
            raise OSError("lost connection to worker")
        return real(cfg, **kw)

    monkeypatch.setattr(geoseg.pipeline, "run", flaky)
    result = run_batch(job)
    assert not result.failed and result.scenes[0].attempts == 3 and result.scenes[0].status == "done"
    monkeypatch.setattr(geoseg.pipeline, "run", lambda cfg, **kw: (_ for _ in ()).throw(OSError("disk full")))
    (tmp_path / "o" / "scenes" / "a.run.json").unlink()
    result = run_batch(job)
    assert result.failed == ["a"] and result.scenes[0].attempts == 3 and "disk full" in result.scenes[0].error


def test_bad_job_files_are_one_line_errors(tmp_path):
    cases = {
        "region: r\nscenes: [a.tif]\noutput: o\nretry: 2\n": "retry",
        "region: r\nscenes: [a.tif]\noutput: o\nretries: -1\n": "retries",
        "region: r\nscenes: [a.tif]\noutput: o\nrun: {tile: 100}\n": "run.tile: tile size must be a multiple of 32",
        "region: r\nscenes: [a.tif]\noutput: o\nrun: {overlaps: 3}\n": "run.overlaps",
        "region: 'bad name'\nscenes: [a.tif]\noutput: o\n": "region",
        "region: r\noutput: o\n": "scenes",
        "region: r\nscenes: [a.tif\n": "not valid YAML (line 3",
        "- just a list\n": "must be a mapping",
    }
    for text, expected in cases.items():
        (tmp_path / "job.yaml").write_text(text)
        code, out = invoke("batch", tmp_path / "job.yaml")
        assert code == 1 and expected in out and "Traceback" not in out, (text, out)
        assert len(out.strip().splitlines()) == 1, out
    code, out = invoke("batch", tmp_path / "missing.yaml")
    assert code == 1 and "not found" in out

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "x.tif").write_bytes(b"")
    (tmp_path / "list.txt").write_text("# scenes\na/x.tif\n\n")
    job = load_job(write_job(tmp_path / "j.yaml", region="r", scenes=["nothing/*.tif"], output="o"))
    with pytest.raises(ConfigError, match="matches no file"):
        scene_paths(job)
    job = load_job(write_job(tmp_path / "j.yaml", region="r", scenes=["list.txt", "b/*.tif"], output="o"))
    with pytest.raises(ConfigError, match="share the name 'x'"):
        scene_paths(job)
    job = load_job(write_job(tmp_path / "j.yaml", region="r", scenes=["list.txt"], output="o"))
    assert scene_paths(job) == [(tmp_path / "a" / "x.tif").resolve()]


def test_the_example_jobs_are_valid():
    job = load_job(Path(__file__).parents[1] / "workflows" / "region.yaml")
    assert job.region and job.merge and job.run.preview
    cloud = load_job(Path(__file__).parents[1] / "workflows" / "cloud" / "region-s3.yaml")
    assert cloud.remote and cloud.scheduler.startswith("tcp://") and cloud.scenes_in_flight == 8
    search, single = cloud.scenes
    assert not isinstance(search, str) and search.is_search and single.startswith("s3://")


# --- resume after SIGKILL ---------------------------------------------------------------------------------------


def _killed_at(failpoint: str, *args: object, cwd: Path) -> None:
    """Run `geoseg ARGS`, stopped at `failpoint` (see geoseg/_failpoints.py), then SIGKILL its whole session."""
    proc, marker = start(*args, cwd=cwd, failpoint=failpoint)
    wait_for(proc, marker)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


@pytest.mark.timeout(600)
def test_run_killed_with_sigkill_resumes_to_identical_outputs(tmp_path, model):
    scene = tmp_path / "scene.tif"
    write_scene(SceneSpec(width=1024, height=1024, pixel_size=0.25, seed=8), scene)
    args = ["run", scene, "--model", model, "--chunk", 256, "--workers", 1, "-q"]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "geoseg", *map(str, args), "-o", tmp_path / "whole"], check=True)
    full = time.perf_counter() - t0

    _killed_at("segment:6", *args, "-o", tmp_path / "killed", cwd=tmp_path)  # one worker: exactly 6 blocks stored
    assert not (tmp_path / "killed" / "scene.run.json").exists()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "geoseg", *map(str, args), "-o", tmp_path / "killed"], check=True)
    resumed = time.perf_counter() - t0
    report = json.loads((tmp_path / "killed" / "scene.run.json").read_text())
    assert report["grid"]["resumed_blocks"] == 6
    assert_same_outputs(tmp_path / "whole", tmp_path / "killed", "scene")  # and no temporary file left behind
    print(f"full run {full:.1f} s, resumed run {resumed:.1f} s ({report['grid']['resumed_blocks']} of 16 blocks)")


@pytest.mark.timeout(600)
def test_batch_killed_with_sigkill_resumes_to_identical_outputs(tmp_path, model):
    write_scene(SceneSpec(width=1024, height=512, pixel_size=0.25, seed=9), tmp_path / "mosaic.tif")
    split_scene(tmp_path / "mosaic.tif", tmp_path / "scenes", 512)
    values = dict(scenes=["scenes/*.tif"], model=str(model), run={"chunk": 128, "min_area": 0, "simplify": 0})
    ref = write_job(tmp_path / "ref.yaml", region="ref", output="ref", workers=1, **values)
    job = write_job(tmp_path / "job.yaml", region="job", output="out", workers=1, **values)
    t0 = time.perf_counter()
    assert invoke("batch", ref, "-q")[0] == 0
    full = time.perf_counter() - t0

    # killed while the second scene is partly segmented: the first scene's 16 blocks, then 6 of the second's
    _killed_at("segment:22", "batch", job, "-q", cwd=tmp_path)
    manifest = json.loads((tmp_path / "out" / "job.manifest.json").read_text())
    assert [s["status"] for s in manifest["scenes"]] == ["done", "pending"]
    t0 = time.perf_counter()
    code, out = invoke("batch", job, "-q")
    resumed = time.perf_counter() - t0
    assert code == 0, out
    manifest = json.loads((tmp_path / "out" / "job.manifest.json").read_text())
    assert [s["status"] for s in manifest["scenes"]] == ["skipped", "done"]
    assert manifest["scenes"][1]["resumed_blocks"] == 6
    for stem in ("part0", "part1"):
        assert_same_outputs(tmp_path / "ref" / "scenes", tmp_path / "out" / "scenes", stem)
    assert features(tmp_path / "ref" / "ref.landcover.gpkg")[0] == features(tmp_path / "out" / "job.landcover.gpkg")[0]
    print(f"full batch {full:.1f} s, resumed batch {resumed:.1f} s")


def test_a_report_that_predates_a_setting_is_still_current():
    """Outputs mapped before --engine existed were made with its default: upgrading does not remap a region."""
    from geoseg.batch import _settings
    from geoseg.config import RunConfig

    params = RunConfig(scene=Path("a.tif"), model=Path("m.pt")).model_dump(mode="json")
    older = {k: v for k, v in params.items() if k != "engine"}
    assert _settings(older) == _settings(params)
    assert _settings(params | {"engine": "onnx"}) != _settings(params)
    assert _settings(params | {"overlap": 32}) != _settings(params)
