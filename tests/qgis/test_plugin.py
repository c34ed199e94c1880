"""The QGIS plugin in headless QGIS: each algorithm through ``processing.run`` and through ``qgis_process``.

QGIS runs in Debian's ``/usr/bin/python3`` (``python3-qgis``; ``qgis`` for ``qgis_process``), which
cannot import geoseg: the plugin runs the ``geoseg`` command, here a wrapper that runs this checkout's
package with the project's Python. One probe process runs every algorithm once and prints a JSON report
(``processing_probe.py``); the tests check it. Tests skip with the reason where QGIS is absent.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from geoseg.predict.checkpoint import init_checkpoint
from geoseg.qgis import PLUGIN_NAME, install_plugin
from geoseg.synthetic import SceneSpec, write_scene
from tests.conftest import ROOT
from tests.export.test_clients import ISPRS_CLASSES, SYSTEM_PYTHON, qgis_missing, system_env

PROBE = Path(__file__).with_name("processing_probe.py")
#: Where a reviewer finds the map the probe rendered (the project's layers after "Map land cover").
REVIEW_PNG = Path("/tmp/geoseg_qgis_landcover.png")


@functools.cache
def qgis_process() -> str | None:
    """Debian's ``qgis_process.bin`` (the ``qgis_process`` wrapper adds an option it rejects), else qgis_process."""
    for name in ("qgis_process.bin", "qgis_process"):
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("qgis-plugin")


@pytest.fixture(scope="module")
def model(work: Path) -> Path:
    """An untrained FCN / ResNet-18 whose seed gives several classes on the scene (see test_clients)."""
    path = work / "fcn18.pt"
    init_checkpoint(path, arch="fcn", encoder="resnet18", in_channels=3, tile_size=128, seed=6)
    return path


@pytest.fixture(scope="module")
def scene(work: Path) -> Path:
    path = work / "scene.tif"
    write_scene(SceneSpec(width=512, height=512, pixel_size=0.25, seed=3), path)
    return path


@pytest.fixture(scope="module")
def env(work: Path, model: Path) -> dict[str, str]:
    """The environment QGIS runs in: a private home, profile and model library, geoseg found by the variable."""
    reason = qgis_missing()
    if reason:
        pytest.skip(reason)
    wrapper = work / "geoseg"
    # this checkout's package, whatever the project's Python has installed
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH='{ROOT}' exec '{sys.executable}' -m geoseg \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    xdg = {f"XDG_{kind}_HOME": str(work / f"xdg-{kind.lower()}") for kind in ("CONFIG", "CACHE", "DATA")}
    xdg["XDG_RUNTIME_DIR"] = str(work / "xdg-runtime")
    for folder in xdg.values():
        Path(folder).mkdir(mode=0o700, exist_ok=True)
    out = system_env() | xdg
    # QGIS's embedded Python takes its home from the first python3 on PATH: the system's, not this venv's
    out["PATH"] = os.pathsep.join(["/usr/bin", "/bin", out.get("PATH", "")])
    out |= {"QT_QPA_PLATFORM": "offscreen", "GEOSEG_EXECUTABLE": str(wrapper), "GEOSEG_HOME": str(work / "home")}
    # the model picker lists the installed models: one, the default
    proc = subprocess.run(
        [str(wrapper), "model", "install", str(model), "--name", "tiny", "--default"],
        capture_output=True,
        text=True,
        env=out,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    # where qgis_process (profile "default" under $XDG_DATA_HOME) loads plugins from
    install_plugin("default", root=Path(xdg["XDG_DATA_HOME"]) / "QGIS" / "QGIS3" / "profiles")
    return out


@pytest.fixture(scope="module")
def job(work: Path, model: Path) -> Path:
    """A regional job of a good scene and a truncated TIFF."""
    scenes = work / "job-scenes"
    scenes.mkdir()
    write_scene(SceneSpec(width=256, height=256, pixel_size=0.25, seed=4), scenes / "part.tif")
    (scenes / "zz_broken.tif").write_bytes(b"II*\x00" + b"\x00" * 64)
    path = work / "job.yaml"
    path.write_text(
        f"region: qgis-region\nscenes: ['{scenes}/*.tif']\nmodel: '{model}'\noutput: '{work / 'job-out'}'\n"
        "retries: 0\nmerge: true\n"
    )
    return path


@pytest.fixture(scope="module")
def probe(work: Path, env: dict[str, str], scene: Path, model: Path, job: Path) -> dict[str, Any]:
    """Every algorithm once in headless QGIS (processing_probe.py): its JSON report."""
    folders = {k: str(work / f"out-{k}") for k in ("landcover", "cancel", "bad")}
    cfg = {
        "plugins": str(Path(env["XDG_DATA_HOME"]) / "QGIS/QGIS3/profiles/default/python/plugins"),
        "scene": str(scene),
        "model": str(model),
        "missing_model": str(work / "missing.pt"),
        "job": str(job),
        "folders": folders,
        "vectorized": str(work / "out-vectorize" / "again.gpkg"),
        "marker": str(work / "reached-vectorize"),
        "png": str(work / "landcover.png"),
    }
    (work / "probe.json").write_text(json.dumps(cfg))
    proc = subprocess.run(
        [SYSTEM_PYTHON, str(PROBE), str(work / "probe.json")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=work,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"the probe printed nothing (exit {proc.returncode}):\n{proc.stderr}"
    (work / "probe-report.json").write_text(lines[-1])  # for whoever debugs a failure
    report = json.loads(lines[-1])
    assert report["ok"], f"the probe failed:\n{report.get('error')}\n{proc.stderr}"
    if Path(cfg["png"]).exists():
        shutil.copyfile(cfg["png"], REVIEW_PNG)
    return {**report, "cfg": cfg, "stderr": proc.stderr}


def assert_progress(rec: dict[str, Any], steps: int = 3) -> None:
    """The feedback bar moved forward from geoseg's progress events (at least `steps`) and reached 100 %."""
    progress = rec["feedback"]["progress"]
    assert len(progress) >= steps, progress
    assert progress == sorted(progress), f"progress went backwards: {progress}"
    assert progress[-1] == 100, progress
    if steps > 1:
        assert 0 < progress[0] < 100, progress


def test_provider_lists_three_algorithms_with_help(probe: dict[str, Any]) -> None:
    assert probe["algorithms"] == ["geoseg:batch", "geoseg:landcover", "geoseg:vectorize"]
    assert all(probe["help"].values()), probe["help"]
    # the model picker lists the installed models, the default one chosen
    assert probe["picker"] == {"options": ["tiny"], "default": "tiny"}


def test_map_land_cover_loads_styled_layers(probe: dict[str, Any], work: Path) -> None:
    rec = probe["landcover"]
    assert rec["ok"], rec.get("exception")
    res = rec["results"]
    folder = Path(probe["cfg"]["folders"]["landcover"])
    assert res["OUTPUT_FOLDER"] == str(folder)
    assert res["CLASSES"] == str(folder / "scene.classes.tif") and Path(res["CLASSES"]).is_file()
    assert res["LANDCOVER"] == f"{folder / 'scene.landcover.gpkg'}|layername=landcover"
    assert (folder / "scene.confidence.tif").is_file()
    report = json.loads(Path(res["REPORT"]).read_text())
    assert Path(report["model"]["path"]) == work / "home" / "models" / "tiny.pt"  # the picker's default model
    assert_progress(rec)
    assert "geoseg: segment" in rec["feedback"]["text"] and "geoseg: vectorize" in rec["feedback"]["text"]
    layers = {layer["name"]: layer for layer in rec["layers"]}
    assert set(layers) == {"scene land cover", "scene classes"}, layers
    vector, raster = layers["scene land cover"], layers["scene classes"]
    assert vector["valid"] and raster["valid"]
    assert vector["renderer"] == "categorizedSymbol"
    assert vector["features"] == res["POLYGONS"] > 0
    expected = [(str(i), name, colour) for i, (name, colour) in ISPRS_CLASSES.items()]
    assert [tuple(map(str, c)) for c in vector["categories"]] == expected
    assert raster["renderer"] == "paletted"
    assert [(str(int(v)), n, c) for v, n, c in raster["classes"]] == expected
    assert rec.get("png_saved"), "the map was not rendered"


def test_vectorise_class_raster_loads_styled_layer(probe: dict[str, Any]) -> None:
    rec = probe["vectorize"]
    assert rec["ok"], rec.get("exception")
    gpkg = Path(probe["cfg"]["vectorized"])
    assert rec["results"]["OUTPUT"] == str(gpkg) and gpkg.is_file()
    assert_progress(rec, steps=1)  # the raster is one vector cell: one step
    (layer,) = rec["layers"]
    assert layer["name"] == "again land cover" and layer["renderer"] == "categorizedSymbol"
    # exact pixel polygons: at least as many as the cleaned map's
    assert layer["features"] == rec["results"]["POLYGONS"] >= probe["landcover"]["results"]["POLYGONS"]


def test_regional_job_reports_each_scene(probe: dict[str, Any], work: Path) -> None:
    rec = probe["batch"]
    assert rec["ok"], rec.get("exception")  # one scene failed, the other is done: the job still reports
    res = rec["results"]
    assert (res["DONE"], res["SKIPPED"], res["FAILED"]) == (1, 0, 1)
    assert res["MANIFEST"] == str(work / "job-out" / "qgis-region.manifest.json")
    info = "\n".join(rec["feedback"]["info"])
    assert re.search(r"^part: done in [\d.]+ s$", info, re.M), info
    assert re.search(r"^zz_broken: failed in [\d.]+ s: .*not a readable raster", info, re.M), info
    assert rec["feedback"]["error"] == [f"1 of 2 scenes failed (zz_broken); see {res['MANIFEST']}"], rec["feedback"][
        "error"
    ]
    assert_progress(rec)
    (layer,) = rec["layers"]
    assert layer["name"] == "qgis-region" and layer["renderer"] == "categorizedSymbol" and layer["features"] > 0


def test_cancel_stops_cleanly_and_the_rerun_resumes(probe: dict[str, Any]) -> None:
    rec = probe["cancel"]
    assert not rec["ok"]
    assert rec["exception"].startswith("cancelled: geoseg stopped"), rec["exception"]
    assert "\n" not in rec["exception"]
    assert 0 < rec["cancelled_at_progress"] < 100  # in the middle: segmentation done, vectorising
    assert rec["seconds"] < 60
    # no final output, the working store kept
    assert probe["after_cancel"] == ["scene.zarr"], probe["after_cancel"]
    resumed = probe["resume"]
    assert resumed["ok"], resumed.get("exception")
    report = json.loads(Path(resumed["results"]["REPORT"]).read_text())
    nx, ny = report["grid"]["blocks"]
    assert report["grid"]["resumed_blocks"] == nx * ny == 4  # every block came from the store
    assert not Path(probe["cfg"]["folders"]["cancel"], "scene.zarr").exists()


def test_bad_input_is_reported_as_one_line(probe: dict[str, Any]) -> None:
    rec = probe["bad_model"]
    assert not rec["ok"]
    message = rec["exception"]
    assert "\n" not in message and "Traceback" not in message and not message.startswith("unexpected")
    assert probe["cfg"]["missing_model"] in message, message
    assert not any(Path(probe["cfg"]["folders"]["bad"]).glob("scene.*"))


# -- qgis_process ---------------------------------------------------------------------------------


def run_qgis_process(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = qgis_process()
    if exe is None:
        pytest.skip("qgis_process is not installed (Debian's qgis package provides it)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd, check=False)


def results_of(stdout: str) -> dict[str, str]:
    """The ``NAME:\\tvalue`` lines after qgis_process's "Results" heading."""
    tail = stdout.split("Results", 1)[-1]
    return dict(re.findall(r"^(\w+):\t(.*)$", tail, re.M))


def test_qgis_process_maps_land_cover(env: dict[str, str], work: Path, scene: Path, model: Path) -> None:
    shell = work / "shell"
    shell.mkdir()
    shutil.copyfile(scene, shell / "scene.tif")
    shutil.copyfile(model, shell / "m.pt")
    args = ["run", "geoseg:landcover", "--", "INPUT=scene.tif", "MODEL=m.pt", "OUTPUT_FOLDER=out"]
    proc = run_qgis_process(env, shell, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = results_of(proc.stdout)
    assert res["CLASSES"] == str(shell / "out" / "scene.classes.tif")
    assert int(res["POLYGONS"]) > 0
    assert {"scene.classes.tif", "scene.landcover.gpkg", "scene.run.json"} <= {
        p.name for p in (shell / "out").iterdir()
    }
    assert "100 - done" in proc.stdout + proc.stderr  # the progress bar, from geoseg's events

    proc = run_qgis_process(
        env, shell, "run", "geoseg:vectorize", "--", f"INPUT={res['CLASSES']}", "SIMPLIFY=0", "OUTPUT=again.gpkg"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert results_of(proc.stdout)["OUTPUT"] == str(shell / "again.gpkg") and (shell / "again.gpkg").is_file()

    # a user error: geoseg's one line, no traceback, exit status 1
    proc = run_qgis_process(env, shell, *args[:-2], "MODEL=nothing-here.pt", "OUTPUT_FOLDER=bad")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if "nothing-here.pt" in line and "--model" not in line[:80]]
    assert errors, text


def test_qgis_process_runs_a_job(env: dict[str, str], job: Path, work: Path, probe: dict[str, Any]) -> None:
    shell = work / "shell-job"
    shell.mkdir()
    # the probe ran the job already: its good scene is current now, the broken one fails again
    proc = run_qgis_process(env, shell, "run", "geoseg:batch", "--", f"JOB={job}", "MERGE=no")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    res = results_of(proc.stdout)
    assert (res["DONE"], res["SKIPPED"], res["FAILED"]) == ("0", "1", "1"), res
    assert "part: outputs are current, skipped" in text and "zz_broken: failed" in text


def test_plugin_installs_where_qgis_process_finds_it(env: dict[str, str]) -> None:
    plugins = Path(env["XDG_DATA_HOME"]) / "QGIS/QGIS3/profiles/default/python/plugins"
    assert (plugins / PLUGIN_NAME / "metadata.txt").is_file()
    proc = run_qgis_process(env, Path(env["XDG_DATA_HOME"]), "list")
    assert proc.returncode == 0, proc.stderr
    listed = set(re.findall(r"^\s+(geoseg:\w+)\t", proc.stdout, re.M))
    assert listed == {"geoseg:landcover", "geoseg:vectorize", "geoseg:batch"}, proc.stdout[-2000:]
