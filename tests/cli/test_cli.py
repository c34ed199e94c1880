"""The command line: help without torch, and one-line errors that leave nothing behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import invoke, smooth_image, write_tif

OUTPUT_SUFFIXES = (".classes.tif", ".landcover.gpkg", ".run.json", ".zarr", ".confidence.tif")


def assert_user_error(code: int, out: str, pattern: str, outdir: Path | None = None, *, exit_code: int = 1) -> None:
    import re

    assert code == exit_code, out
    assert "Traceback" not in out
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 if exit_code == 1 else lines, out
    assert re.search(pattern, out), out
    if outdir is not None and outdir.exists():
        leftovers = [p.name for p in outdir.iterdir() if p.name.endswith(OUTPUT_SUFFIXES) or ".part-" in p.name]
        assert leftovers == [], leftovers


def test_help_does_not_import_torch():
    code = (
        "import sys; from geoseg.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "import geoseg; assert 'torch' not in sys.modules"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "run" in r.stdout and "model" in r.stdout


@pytest.mark.parametrize("cmd", [["run"], ["info"], ["model", "init"], ["model", "import"]])
def test_every_command_has_help(cmd):
    code, out = invoke(*cmd, "--help")
    assert code == 0 and "Usage:" in out


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return write_tif(tmp_path / "scene.tif", smooth_image(96, 80))


def test_missing_scene(tmp_path, fcn_model):
    assert_user_error(
        *invoke("run", tmp_path / "nope.tif", "--model", fcn_model), r"scene not found: .*nope\.tif", tmp_path
    )


def test_not_a_raster(tmp_path, fcn_model):
    (tmp_path / "notes.tif").write_text("hello")
    assert_user_error(
        *invoke("run", tmp_path / "notes.tif", "--model", fcn_model),
        r"notes\.tif is not a readable raster .*pass a GeoTIFF",
        tmp_path,
    )


def test_raster_without_crs(tmp_path, fcn_model):
    path = write_tif(tmp_path / "nocrs.tif", smooth_image(40, 40), crs=None)
    assert_user_error(
        *invoke("run", path, "--model", fcn_model),
        r"nocrs\.tif has no coordinate reference system; assign one",
        tmp_path,
    )


def test_band_count_that_does_not_fit(tmp_path, fcn_model):
    path = write_tif(tmp_path / "rgbn.tif", smooth_image(40, 40, bands=5))
    assert_user_error(
        *invoke("run", path, "--model", fcn_model),
        r"has 5 band\(s\) but the model expects 3 \(bands: red,green,blue\); pass --bands 1,2,3",
        tmp_path,
    )


def test_all_nodata_scene(tmp_path, fcn_model):
    path = write_tif(tmp_path / "empty.tif", np.zeros((3, 70, 50), np.uint8), nodata=0)
    assert_user_error(*invoke("run", path, "--model", fcn_model), r"empty\.tif has no valid pixels", tmp_path)


def test_truncated_tiff(tmp_path, fcn_model):
    path = write_tif(tmp_path / "cut.tif", smooth_image(300, 300), tiled=True, blockxsize=64, blockysize=64)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    assert_user_error(
        *invoke("run", path, "--model", fcn_model), r"cut\.tif is (truncated|not a readable raster)", tmp_path
    )


def test_unwritable_outdir(tmp_path, scene, fcn_model):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    assert_user_error(
        *invoke("run", scene, "--model", fcn_model, "-o", blocker / "out"),
        r"cannot write to output folder .*pass -o with a writable folder",
    )
    assert not (tmp_path / "scene.classes.tif").exists()


def test_existing_outputs_need_overwrite(tmp_path, scene, fcn_model):
    existing = tmp_path / "scene.landcover.gpkg"
    existing.write_text("previous result")
    assert_user_error(
        *invoke("run", scene, "--model", fcn_model), r"scene\.landcover\.gpkg already exist\(s\) .*pass --overwrite"
    )
    assert existing.read_text() == "previous result"
    assert not (tmp_path / "scene.classes.tif").exists() and not (tmp_path / "scene.zarr").exists()


def test_not_a_geoseg_checkpoint(tmp_path, scene):
    fake = tmp_path / "model.pt"
    fake.write_bytes(b"PK\x03\x04 not really")
    assert_user_error(*invoke("run", scene, "--model", fake), r"model\.pt is not a geoseg checkpoint", tmp_path)


def test_missing_model_file(tmp_path, scene):
    assert_user_error(*invoke("run", scene, "--model", tmp_path / "none.pt"), r"model file not found", tmp_path)


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--tile", "500"], "multiple of 32"),
        (["--overlap", "33"], "overlap must be even"),
        (["--bands", "1,x"], "--bands takes"),
        (["--scheduler", "mpi"], "scheduler"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path, scene, fcn_model, args, pattern):
    code, out = invoke("run", scene, "--model", fcn_model, *args)
    assert_user_error(code, out, pattern, tmp_path, exit_code=2)


def test_model_init_and_info(tmp_path):
    code, out = invoke(
        "model", "init", "--arch", "fcn", "--encoder", "resnet18", "--in-channels", "4", "-o", tmp_path / "m.pt"
    )
    assert code == 0, out
    code, out = invoke("info", tmp_path / "m.pt")
    assert code == 0 and "fcn / resnet18" in out and "red,green,blue,nir" in out
    code, out = invoke("model", "init", "-o", tmp_path / "m.pt")
    assert_user_error(code, out, "already exists; pass --overwrite")


def test_info_scene(shared_data):
    code, out = invoke("info", shared_data / "geotiff" / "rasterio_RGBA.byte.tif")
    assert code == 0, out
    for expected in ("791 x 718 px", "EPSG:32618", "300 x 300", "alpha (alpha band 4)", "blocks"):
        assert expected in out


def test_model_import_cli(tmp_path):
    import torch

    from geoseg.predict.checkpoint import read_spec
    from geoseg.predict.models import build_model

    torch.save(build_model("unet", "resnet18", in_channels=4, classes=6).state_dict(), tmp_path / "sd.pth")
    code, out = invoke(
        "model",
        "import",
        tmp_path / "sd.pth",
        "--arch",
        "unet",
        "--encoder",
        "resnet18",
        "--in-channels",
        "4",
        "--mean",
        "0",
        "--std",
        "10000",
        "--band-names",
        "b,g,r,nir",
        "--gsd",
        "0.3",
        "-o",
        tmp_path / "m.pt",
    )
    assert code == 0, out
    spec = read_spec(tmp_path / "m.pt")
    assert spec.std == (10000.0,) * 4 and spec.bands == ("b", "g", "r", "nir") and spec.gsd == 0.3
    code, out = invoke(
        "model",
        "import",
        tmp_path / "sd.pth",
        "--arch",
        "fpn",
        "--encoder",
        "resnet18",
        "--in-channels",
        "4",
        "--mean",
        "0",
        "--std",
        "1",
        "-o",
        tmp_path / "x.pt",
    )
    assert_user_error(code, out, r"does not fit fpn/resnet18", tmp_path)


def test_run_prints_summary_and_quiet_prints_nothing(tmp_path, fcn_model):
    scene = write_tif(tmp_path / "s.tif", smooth_image(300, 280))
    code, out = invoke("run", scene, "--model", fcn_model, "--tile", "128", "--overlap", "32", "--chunk", "200")
    assert code == 0, out
    for text in ("segment", "vectorize", "Land cover", "impervious surfaces", "polygons", "Mpx/s", "s.landcover.gpkg"):
        assert text in out
    code, out = invoke("run", scene, "--model", fcn_model, "--tile", "128", "--overwrite", "-q", "-o", tmp_path / "q")
    assert code == 0 and out == ""
    assert (tmp_path / "q" / "s.classes.tif").exists() and (tmp_path / "q" / "s.run.json").exists()


def test_compile_flag_runs_the_forward_passes_through_torch_compile(tmp_path, fcn_model, monkeypatch):
    import json

    import torch

    calls = []

    def recording_compile(model, **kw):
        def compiled(x):
            calls.append(tuple(x.shape))
            return model(x)

        return compiled

    monkeypatch.setattr(torch, "compile", recording_compile)
    scene = write_tif(tmp_path / "s.tif", smooth_image(300, 280))
    code, out = invoke("run", scene, "--model", fcn_model, "--tile", "128", "--overlap", "32", "--compile", "-q")
    assert code == 0, out
    assert calls and set(calls) == {(1, 3, 128, 128)}  # every forward pass, one fixed shape
    report = json.loads((tmp_path / "s.run.json").read_text())
    assert report["parameters"]["compile"] is True
