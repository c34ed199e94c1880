"""The typed run report: written by run, read back by batch; the same JSON both ways."""

from __future__ import annotations

import json

from geoseg.config import RunConfig
from geoseg.export.report import read_report
from geoseg.pipeline import run
from geoseg.synthetic import SceneSpec, write_scene


def test_the_report_round_trips_and_keeps_its_json(tmp_path, fcn_model):
    scene = tmp_path / "s.tif"
    write_scene(SceneSpec(width=300, height=260, pixel_size=0.5, seed=2, nodata=0), scene)
    res = run(RunConfig(scene=scene, model=fcn_model, outdir=tmp_path / "out", tile=128, overlap=32))
    path = res.outputs["report"]
    raw = json.loads(path.read_text())
    back = read_report(path)
    assert back == res.report
    assert back.model_dump(mode="json") == raw  # every key, in the same form (ints stay ints)
    assert list(raw) == list(back.model_dump())  # and order
    assert isinstance(raw["cleaning"]["min_pixels"], type(res.report.cleaning.min_pixels))
    assert back.scene.checksum.startswith("sha256:") and back.model.sha256 == raw["model"]["sha256"]
    assert back.class_areas == res.class_areas | {k: round(v, 3) for k, v in res.class_areas.items()}
    assert sum(c.pixels for c in back.classes) == back.valid_pixels == res.valid_pixels
    assert set(back.outputs) == {"classes", "landcover"}


def test_unreadable_or_foreign_reports_read_as_none_and_newer_keys_are_ignored(tmp_path, fcn_model):
    assert read_report(tmp_path / "missing.run.json") is None
    bad = tmp_path / "bad.run.json"
    bad.write_text("{not json")
    assert read_report(bad) is None
    bad.write_text(json.dumps({"scene": {"path": "x"}}))  # some other JSON
    assert read_report(bad) is None
    scene = tmp_path / "s.tif"
    write_scene(SceneSpec(width=200, height=200, pixel_size=0.5, seed=3), scene)
    res = run(RunConfig(scene=scene, model=fcn_model, outdir=tmp_path, tile=128, overlap=32))
    raw = json.loads(res.outputs["report"].read_text())
    raw["added_later"] = {"x": 1}
    raw["grid"]["also_new"] = 2
    bad.write_text(json.dumps(raw))
    assert read_report(bad) == res.report
