"""merge_layers on its own: scenes on one grid join across their shared edge; others are kept as they are."""

from __future__ import annotations

import shutil

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio import features as rio_features

from geoseg.config import RunConfig
from geoseg.errors import GeosegIOError
from geoseg.pipeline import run
from geoseg.regional import merge_layers
from tests.conftest import smooth_image, write_tif

ORIGIN = Affine(0.5, 0, 500000.0, 0, -0.5, 5800000.0)


@pytest.fixture(scope="module")
def two_scenes(tmp_path_factory, fcn_model):
    """Two 192-px-wide halves of one image, mapped with exact polygons, and the second one shifted by half a pixel."""
    root = tmp_path_factory.mktemp("regional")
    image = smooth_image(160, 384, seed=4)
    outs = {}
    for name, col0, shift in (("west", 0, 0.0), ("east", 192, 0.0), ("shifted", 192, 0.25)):
        t = ORIGIN @ Affine.translation(col0 + shift, 0)
        scene = write_tif(root / f"{name}.tif", image[:, :, col0 : col0 + 192], transform=t)
        res = run(
            RunConfig(scene=scene, model=fcn_model, outdir=root / name, tile=64, overlap=16, min_area=0, simplify=0)
        )
        outs[name] = (res.outputs["landcover"], res.outputs["report"], res.outputs["classes"])
    return root, outs


def layer(path):
    _, _, wkb, cols = pyogrio.raw.read(path, layer="landcover")
    meta = pyogrio.read_info(path, layer="landcover")
    return shapely.from_wkb(wkb), dict(zip(meta["fields"], cols, strict=True))


def test_scenes_on_one_grid_join_across_their_edge(two_scenes, tmp_path):
    _, outs = two_scenes
    west, east = outs["west"], outs["east"]
    result = merge_layers([west[0], east[0]], [west[1], east[1]], tmp_path / "region.gpkg", names=["west", "east"])
    with rasterio.open(west[2]) as a, rasterio.open(east[2]) as b:
        mosaic = np.concatenate([a.read(1), b.read(1)], axis=1)
    expected = sum(1 for _ in rio_features.shapes(mosaic, mask=mosaic != 255, connectivity=4))
    geoms, fields = layer(tmp_path / "region.gpkg")
    assert len(geoms) == expected < len(layer(west[0])[0]) + len(layer(east[0])[0])
    assert (fields["scene"] == "west; east").any()
    assert shapely.area(geoms).sum() == pytest.approx(mosaic.size * 0.25, rel=1e-12)
    assert shapely.area(geoms).sum() == pytest.approx(shapely.union_all(geoms).area, rel=1e-12)  # no overlaps
    assert result is not None


def test_scenes_off_the_grid_are_not_joined(two_scenes, tmp_path):
    _, outs = two_scenes
    west, shifted = outs["west"], outs["shifted"]
    merge_layers([west[0], shifted[0]], [west[1], shifted[1]], tmp_path / "region.gpkg", names=["west", "shifted"])
    geoms, fields = layer(tmp_path / "region.gpkg")
    assert len(geoms) == len(layer(west[0])[0]) + len(layer(shifted[0])[0])
    assert set(fields["scene"]) == {"west", "shifted"}


def test_a_scene_without_its_report_is_a_one_line_error(two_scenes, tmp_path):
    _, outs = two_scenes
    west, east = outs["west"], outs["east"]
    report = tmp_path / "east.run.json"
    shutil.copy(east[1], report)
    report.write_text("{}")
    with pytest.raises(GeosegIOError, match=r"^cannot read the outputs of scene east: .* not a run report$"):
        merge_layers([west[0], east[0]], [west[1], report], tmp_path / "region.gpkg", names=["west", "east"])
    assert not (tmp_path / "region.gpkg").exists()
