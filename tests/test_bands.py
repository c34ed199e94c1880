"""Band meaning: which scene bands a model sees, and alpha bands that are really data.

Scenes are written here with the tags real files carry: GDAL colour
interpretation (red/green/blue/alpha/gray/undefined) and band descriptions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.enums import ColorInterp

from geoseg.classes import NODATA
from geoseg.cli import main
from geoseg.config import RunConfig
from geoseg.errors import SceneError
from geoseg.pipeline import run
from geoseg.raster import (
    BAND_ALIASES,
    _alpha_holds_data,
    _sample_band,
    band_meaning,
    band_meanings,
    open_scene,
    read_window,
    select_bands,
)
from tests.conftest import smooth_image, write_tif

RGB = ("red", "green", "blue")
IRRG = ("nir", "red", "green")
RGBN = ("red", "green", "blue", "nir")


def tagged_tif(
    path: Path,
    data: np.ndarray,
    colorinterp: Sequence[str],
    descriptions: Sequence[str | None] | None = None,
    **profile: object,
) -> Path:
    """A GeoTIFF whose bands carry the given colour interpretation and descriptions."""
    photometric = "RGB" if tuple(colorinterp[:3]) == RGB else "MINISBLACK"
    extra = {"alpha": "YES"} if "alpha" in colorinterp else {}
    write_tif(path, data, photometric=photometric, **extra, **profile)  # type: ignore[arg-type]
    with rasterio.open(path, "r+") as ds:
        ds.colorinterp = [ColorInterp[c] for c in colorinterp]
        for b, d in enumerate(descriptions or (), start=1):
            if d:
                ds.set_band_description(b, d)
    return path


def caught(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "geoseg.raster" and r.levelno == logging.WARNING]


# -- names -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "meaning"),
    [
        ("nir", "nir"),
        ("NIR", "nir"),
        ("ir", "nir"),
        ("near-infrared", "nir"),
        ("Near Infrared", "nir"),
        ("Near-Infrared (NIR)", "nir"),
        ("near_infrared", "nir"),
        ("r", "red"),
        ("Red", "red"),
        ("red band", "red"),
        ("B04 red", "red"),
        ("b", "blue"),
        ("g", "green"),
        ("red edge", "rededge"),  # never red
        ("Band 1", None),
        ("coastal aerosol", None),
        ("red green", None),
        ("", None),
        (None, None),
    ],
)
def test_band_names_and_descriptions_map_to_meanings(name, meaning):
    assert band_meaning(name) == meaning


def test_alias_table_is_one_to_one():
    aliases = [a for names in BAND_ALIASES.values() for a in names]
    assert len(aliases) == len(set(aliases))
    assert all(band_meaning(m) == m for m in BAND_ALIASES)


# -- choosing bands by meaning -----------------------------------------------------------------
@pytest.fixture
def rgbir(tmp_path) -> Path:
    """4-band R,G,B + NIR as Potsdam's RGBIR tiles and NAIP are: band 4 untagged, described 'NIR'."""
    return tagged_tif(
        tmp_path / "rgbir.tif",
        smooth_image(64, 64, bands=4),
        ("red", "green", "blue", "undefined"),
        (None,) * 3 + ("NIR",),
    )


def test_rgbir_scene_feeds_each_model_its_bands(rgbir, caplog):
    info = open_scene(rgbir)
    assert band_meanings(info) == ("red", "green", "blue", "nir")
    assert select_bands(info, None, 3, IRRG) == (4, 1, 2)
    assert select_bands(info, None, 3, RGB) == (1, 2, 3)
    assert select_bands(info, None, 4, RGBN) == (1, 2, 3, 4)
    assert select_bands(info, None, 4, ("b", "g", "r", "nir")) == (3, 2, 1, 4)
    assert caught(caplog) == []  # meaning decided: nothing to warn about


def test_rgba_scene_feeds_rgb_model_bands_1_2_3(tmp_path):
    img = smooth_image(40, 40, bands=4)
    img[3] = np.where(np.arange(40)[None, :] < 8, 0, 255)
    info = open_scene(tagged_tif(tmp_path / "rgba.tif", img, ("red", "green", "blue", "alpha")))
    assert band_meanings(info) == ("red", "green", "blue", "alpha")
    assert select_bands(info, None, 3, RGB) == (1, 2, 3)


def test_untagged_fourth_band_is_taken_for_the_missing_input_with_a_warning(tmp_path, caplog):
    path = tagged_tif(tmp_path / "rgbn.tif", smooth_image(40, 40, bands=4), ("red", "green", "blue", "undefined"))
    assert select_bands(open_scene(path), None, 3, IRRG) == (4, 1, 2)
    (msg,) = caught(caplog)
    assert "band(s) 4 do not say what they hold" in msg and "nir" in msg


def test_irrg_model_on_rgb_tagged_scene_is_refused_with_the_bands_to_pass(tmp_path):
    info = open_scene(tagged_tif(tmp_path / "rgb.tif", smooth_image(40, 40), RGB))
    with pytest.raises(
        SceneError,
        match=r"rgb\.tif has bands tagged red,green,blue but the model expects nir,red,green: no band is tagged "
        r"nir; .*pass --bands 1,2,3, else use a model for red,green,blue imagery",
    ):
        select_bands(info, None, 3, IRRG)


def test_rgb_model_on_irrg_described_scene_is_refused(tmp_path):
    # ISPRS Vaihingen-like: 3 bands described nir, red, green, MINISBLACK (gray, undefined, undefined)
    path = tagged_tif(tmp_path / "irrg.tif", smooth_image(40, 40), ("gray", "undefined", "undefined"), IRRG)
    info = open_scene(path)
    assert select_bands(info, None, 3, IRRG) == (1, 2, 3)
    with pytest.raises(SceneError, match=r"no band is tagged blue; .*pass --bands 1,2,3"):
        select_bands(info, None, 3, RGB)


def test_description_wins_over_gdal_default_colour_interpretation(tmp_path):
    # GDAL tags a 3-band 8-bit TIFF red,green,blue; whoever wrote the descriptions knew better
    path = tagged_tif(tmp_path / "irrg_rgbtag.tif", smooth_image(40, 40), RGB, IRRG)
    assert select_bands(open_scene(path), None, 3, IRRG) == (1, 2, 3)


def test_ambiguous_untagged_bands_are_refused(tmp_path):
    path = tagged_tif(
        tmp_path / "five.tif", smooth_image(40, 40, bands=5), ("red", "green", "blue", "undefined", "undefined")
    )
    with pytest.raises(SceneError, match=r"nir input\(s\) could be any of band\(s\) 4,5; .*--bands 4,1,2"):
        select_bands(open_scene(path), None, 3, IRRG)


def test_two_bands_with_one_meaning_are_refused(tmp_path):
    path = tagged_tif(
        tmp_path / "twonir.tif",
        smooth_image(40, 40, bands=5),
        ("red", "green", "blue", "undefined", "undefined"),
        (None, None, None, "nir", "NIR"),
    )
    with pytest.raises(SceneError, match=r"2 bands tagged nir \(4,5\).*--bands 4,1,2"):
        select_bands(open_scene(path), None, 3, IRRG)


def test_unknown_meaning_lets_count_decide_and_warns_once(tmp_path, caplog):
    path = tagged_tif(tmp_path / "gray.tif", smooth_image(40, 40), ("gray", "undefined", "undefined"))
    info = open_scene(path)
    assert select_bands(info, None, 3, IRRG) == (1, 2, 3)
    assert select_bands(info, None, 3, IRRG) == (1, 2, 3)
    (msg,) = caught(caplog)
    assert "gray.tif does not say what its bands hold" in msg and "nir,red,green" in msg


def test_explicit_bands_win_but_a_contradiction_is_logged(tmp_path, caplog):
    info = open_scene(tagged_tif(tmp_path / "rgb2.tif", smooth_image(40, 40), RGB))
    assert select_bands(info, (1, 2, 3), 3, IRRG) == (1, 2, 3)
    (msg,) = caught(caplog)
    assert "--bands 1,2,3 feeds band 1 (red) to nir, band 2 (green) to red, band 3 (blue) to green" in msg
    caplog.clear()
    assert select_bands(info, (3, 2, 1), 3, ("blue", "green", "red")) == (3, 2, 1)
    assert caught(caplog) == []


def test_single_band_error_offers_bands_1_1_1(tmp_path):
    info = open_scene(write_tif(tmp_path / "pan.tif", smooth_image(40, 40, bands=1)))
    with pytest.raises(SceneError, match=r"pass --bands 1,1,1 to feed its one band to every input"):
        select_bands(info, None, 3, RGB)
    assert select_bands(info, (1, 1, 1), 3, RGB) == (1, 1, 1)
    data, valid = read_window(info.path, 0, 0, 40, 40, (1, 1, 1))
    assert data.shape == (3, 40, 40) and (data[0] == data[2]).all() and valid.all()


def test_run_and_info_choose_the_same_bands_on_an_rgbir_scene(rgbir, tmp_path):
    from geoseg.predict.checkpoint import init_checkpoint

    model = tmp_path / "irrg.pt"
    init_checkpoint(model, arch="fcn", encoder="resnet18", in_channels=3, bands=IRRG, seed=1)
    res = CliRunner().invoke(main, ["info", str(rgbir), "--model", str(model), "--json"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert shown["band_meaning"] == "1=red, 2=green, 3=blue, 4=nir"
    assert shown["model_bands"].startswith("--bands 4,1,2 ")
    out = run(RunConfig(scene=rgbir, model=model, outdir=tmp_path / "out", tile=64, overlap=16))
    assert out.report.scene.bands_used == [4, 1, 2]

    rgb = tagged_tif(tmp_path / "rgbonly.tif", smooth_image(64, 64), RGB)
    res = CliRunner().invoke(main, ["run", str(rgb), "--model", str(model), "-o", str(tmp_path / "o2")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "no band is tagged nir" in res.output and "pass --bands 1,2,3" in res.output
    res = CliRunner().invoke(main, ["info", str(rgb), "--model", str(model)])
    assert res.exit_code == 0 and "refused: rgbonly.tif has bands tagged red,green,blue" in res.output


# -- alpha bands that hold data ----------------------------------------------------------------
def torchgeo_rgbir(path: Path, size: int = 96) -> tuple[Path, np.ndarray]:
    """Like torchgeo's RGBIR fixture and some NAIP files: NIR in a band tagged alpha, zeros included."""
    img = smooth_image(size, size, bands=4, seed=9)
    img[3, :, : size // 4] = 0  # dark water in NIR: data, not a hole
    return tagged_tif(path, img, ("red", "green", "blue", "alpha")), img


def test_alpha_band_with_many_values_is_data(tmp_path, caplog):
    path, _ = torchgeo_rgbir(tmp_path / "rgbir_alpha.tif")
    info = open_scene(path)
    assert info.data_alpha == (4,) and info.alpha_bands == () and info.mask_kind == "none"
    assert info.data_bands == (1, 2, 3, 4)
    (msg,) = caught(caplog)
    assert "band 4 of rgbir_alpha.tif is tagged alpha but holds data" in msg
    _, valid = read_window(info.path, -8, -8, 112, 112, (1, 2, 3))
    assert valid.all()  # GDAL's dataset mask would drop the NIR = 0 columns
    assert select_bands(info, None, 4, RGBN) == (1, 2, 3, 4)  # untagged band 4 -> the missing nir, warned
    res = CliRunner().invoke(main, ["info", str(path)])
    assert "band 4 is tagged alpha but holds data: used as data" in res.output


def test_alpha_data_pixels_are_mapped_end_to_end(tmp_path, fcn_model):
    path, img = torchgeo_rgbir(tmp_path / "rgbir_run.tif")
    res = run(RunConfig(scene=path, model=fcn_model, outdir=tmp_path, tile=64, overlap=16))
    with rasterio.open(res.outputs["classes"]) as ds:
        classes = ds.read(1)
    assert (img[3] == 0).any() and not (classes == NODATA).any()
    assert res.valid_pixels == img[0].size


def test_alpha_with_data_and_nodata_masks_by_nodata(tmp_path):
    img = smooth_image(50, 50, bands=4, seed=3).clip(1, 255)
    img[:, :5, :] = 0
    img[3, 20:, :10] = 0  # NIR = 0 beside valid RGB: still valid
    path = tagged_tif(tmp_path / "nd.tif", img, ("red", "green", "blue", "alpha"), nodata=0)
    info = open_scene(path)
    assert info.data_alpha == (4,) and info.mask_kind == "nodata"
    _, valid = read_window(info.path, 0, 0, 50, 50, (1, 2, 3))
    np.testing.assert_array_equal(valid, (img != 0).any(axis=0))


def test_real_and_feathered_alpha_stay_masks(tmp_path):
    img = smooth_image(120, 120, bands=4)
    yy, xx = np.mgrid[:120, :120]
    dist = np.hypot(yy - 60, xx - 60)
    img[3] = np.where(dist < 50, 255, 0)
    info = open_scene(tagged_tif(tmp_path / "hard.tif", img, ("red", "green", "blue", "alpha")))
    assert info.alpha_bands == (4,) and info.data_alpha == () and info.mask_kind == "alpha"
    # gdalwarp -dstalpha with cubic resampling: a 1-2 px ramp between 0 and 255 along the edge
    img[3] = (np.clip(50.5 - dist, 0, 1.5) / 1.5 * 255).astype(np.uint8)
    info = open_scene(tagged_tif(tmp_path / "feather.tif", img, ("red", "green", "blue", "alpha")))
    assert len(np.unique(img[3])) > 2 and info.alpha_bands == (4,) and info.data_alpha == ()
    _, valid = read_window(info.path, 0, 0, 120, 120, (1, 2, 3))
    np.testing.assert_array_equal(valid, img[3] > 0)


@pytest.mark.parametrize("overviews", [False, True])
def test_alpha_decision_reads_a_sample_not_the_band(tmp_path, overviews):
    path, img = torchgeo_rgbir(tmp_path / "big.tif", size=600)
    if overviews:
        with rasterio.open(path, "r+") as ds:
            ds.build_overviews([4], rasterio.enums.Resampling.nearest)
    with rasterio.open(path) as ds:
        sample = _sample_band(ds, 4, max_side=100)
    assert sample.size < img[3].size / 4
    assert _alpha_holds_data(sample)[0]
    mask = np.where(img[3] > 0, 255, 0).astype(np.uint8)
    assert not _alpha_holds_data(mask.ravel())[0]
