"""``--log-json`` progress and result events: what a program driving geoseg (the QGIS plugin) reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from geoseg.predict.checkpoint import init_checkpoint
from geoseg.synthetic import SceneSpec, write_scene
from tests.conftest import invoke


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events") / "scene.tif"
    write_scene(SceneSpec(width=256, height=256, pixel_size=0.25, seed=3), path)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events-model") / "fcn.pt"
    init_checkpoint(path, arch="fcn", encoder="resnet18", tile_size=128, seed=6)
    return path


def events(text: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [r for r in records if "event" in r]


def test_run_logs_progress_fractions_and_its_outputs(tmp_path: Path, scene: Path, model: Path) -> None:
    code, out = invoke("run", scene, "--model", model, "-o", tmp_path, "-q", "--log-json", "--chunk", 128)
    assert code == 0, out
    recs = events(out)
    progress = [r for r in recs if r["event"] == "progress"]
    fractions = [r["fraction"] for r in progress]
    assert fractions == sorted(fractions) and 0 < fractions[0] < 1 and fractions[-1] == 1.0, fractions
    segment = [(r["done"], r["total"]) for r in progress if r["stage"] == "segment"]
    assert segment == [(1, 4), (2, 4), (3, 4), (4, 4)]  # four 128 px blocks, each a whole percent or more
    assert {"segment", "vectorize", "export"} <= {r["stage"] for r in progress}
    (result,) = [r for r in recs if r["event"] == "result"]
    assert result["outputs"] == {
        "landcover": str(tmp_path / "scene.landcover.gpkg"),
        "classes": str(tmp_path / "scene.classes.tif"),
        "report": str(tmp_path / "scene.run.json"),
    }
    assert all(Path(p).is_file() for p in result["outputs"].values())
    report = json.loads((tmp_path / "scene.run.json").read_text())
    assert result["polygons"] > 0 and result["resumed_blocks"] == report["grid"]["resumed_blocks"] == 0


def test_run_without_log_json_logs_no_events(tmp_path: Path, scene: Path, model: Path) -> None:
    code, out = invoke("run", scene, "--model", model, "-o", tmp_path, "-q")
    assert code == 0, out
    assert not events(out) and '"event"' not in out


def test_vectorize_logs_progress_and_its_output(tmp_path: Path, scene: Path, model: Path) -> None:
    code, out = invoke("run", scene, "--model", model, "-o", tmp_path, "-q")
    assert code == 0, out
    gpkg = tmp_path / "again.gpkg"
    code, out = invoke("vectorize", tmp_path / "scene.classes.tif", "-o", gpkg, "-q", "--log-json")
    assert code == 0, out
    recs = events(out)
    assert [r["fraction"] for r in recs if r["event"] == "progress"][-1] == 1.0
    (result,) = [r for r in recs if r["event"] == "result"]
    assert result["outputs"] == {"landcover": str(gpkg)} and gpkg.is_file() and result["polygons"] > 0


def test_user_error_stays_one_plain_line(tmp_path: Path, scene: Path) -> None:
    code, out = invoke("run", scene, "--model", tmp_path / "missing.pt", "-o", tmp_path, "-q", "--log-json")
    assert code == 1
    errors = [line for line in out.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "missing.pt" in errors[0], out
    assert not [r for r in events(out) if r["event"] == "result"]
