"""The whole pipeline on CPU with a small untrained model (FCN-8s / ResNet-18).

An untrained model is enough here: these tests check geometry, blending,
invariance and outputs, which do not depend on what the model has learned.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import rasterio.features
import shapely
from affine import Affine

from geoseg.classes import NODATA
from geoseg.config import RunConfig
from geoseg.pipeline import run
from geoseg.synthetic import SceneSpec, write_scene
from tests.conftest import smooth_image, write_tif

TILE, OVERLAP = 512, 64


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_classes(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


@pytest.fixture(scope="module")
def scene_3000(tmp_path_factory) -> Path:
    """A seeded synthetic 3000 x 2500 scene: sizes that are multiples of nothing."""
    path = tmp_path_factory.mktemp("scene") / "synthetic.tif"
    write_scene(SceneSpec(width=3000, height=2500, pixel_size=0.1, seed=7), path)
    return path


@pytest.fixture(scope="module")
def runs(scene_3000, fcn_model, tmp_path_factory) -> dict[str, Path]:
    """The same scene run three ways: 1024 and 4096 px chunks (threads), and worker processes."""
    out = {}
    for name, kw in {
        "chunk1024": {"chunk": 1024},
        "chunk4096": {"chunk": 4096},
        "processes": {"chunk": 1024, "scheduler": "processes", "workers": 2},
    }.items():
        outdir = tmp_path_factory.mktemp(name)
        run(
            RunConfig(
                scene=scene_3000,
                model=fcn_model,
                outdir=outdir,
                tile=TILE,
                overlap=OVERLAP,
                simplify=0,
                min_area=0,
                **kw,
            )
        )
        out[name] = outdir
    return out


def test_chunk_size_and_scheduler_do_not_change_a_byte(runs):
    tifs = {k: v / "synthetic.classes.tif" for k, v in runs.items()}
    arrays = {k: read_classes(p) for k, p in tifs.items()}
    np.testing.assert_array_equal(arrays["chunk1024"], arrays["chunk4096"])
    np.testing.assert_array_equal(arrays["chunk1024"], arrays["processes"])
    assert len({sha256(p) for p in tifs.values()}) == 1  # the COG files themselves are identical
    frames = {k: pyogrio.read_dataframe(v / "synthetic.landcover.gpkg", layer="landcover") for k, v in runs.items()}
    for other in ("chunk4096", "processes"):  # and so are the polygons, in the same order
        assert shapely.equals_exact(frames[other].geometry.values, frames["chunk1024"].geometry.values, 0).all()
        np.testing.assert_array_equal(frames[other].mean_confidence, frames["chunk1024"].mean_confidence)
    report = json.loads((runs["chunk1024"] / "synthetic.run.json").read_text())
    assert report["grid"]["blocks"] == [3, 4] and report["grid"]["block"] == 896
    # not a comparison of near-constant rasters: several classes, hundreds of regions
    shares = np.bincount(arrays["chunk1024"].ravel(), minlength=256)[:6] / arrays["chunk1024"].size
    assert (shares > 0.01).sum() >= 2 and report["polygons"] > 100


def naive_sliding_window(scene: Path, model: Path, tile: int, overlap: int) -> np.ndarray:
    """Whole scene in memory, one global pass: pad, predict every tile, blend, argmax.

    Written independently of geoseg's tiling/stitch code; it shares only the
    documented rules: tiles at k*stride - overlap/2, reflect padding, the sin²
    window and 2**24 fixed-point accumulation.
    """
    from geoseg.predict.engine import Predictor

    with rasterio.open(scene) as ds:
        img = ds.read()
    _, h, w = img.shape
    m, stride = overlap // 2, tile - overlap
    ny, nx = math.ceil(h / stride), math.ceil(w / stride)
    pad_b, pad_r = ny * stride + m - h, nx * stride + m - w
    padded = np.pad(img, ((0, 0), (m, pad_b), (m, pad_r)), mode="reflect")
    ramp = np.ones(tile)
    p = np.arange(overlap)
    ramp[:overlap] = np.sin(np.pi / 2 * (p + 0.5) / overlap) ** 2
    ramp[tile - overlap :] = ramp[:overlap][::-1]
    ramp = ramp.astype(np.float32)
    weights = np.outer(ramp, ramp) * np.float32(2**24)
    predictor = Predictor(model, device="cpu", threads=1)
    acc = np.zeros((6, padded.shape[1], padded.shape[2]), np.int64)
    for ty in range(ny):
        for tx in range(nx):
            y, x = ty * stride, tx * stride  # top-left in padded coordinates
            probs = predictor.predict(padded[None, :, y : y + tile, x : x + tile])[0]
            acc[:, y : y + tile, x : x + tile] += np.rint(probs * weights).astype(np.int64)
    return np.argmax(acc[:, m : m + h, m : m + w], axis=0).astype(np.uint8)


def test_equals_naive_global_sliding_window(runs, scene_3000, fcn_model):
    ours = read_classes(runs["chunk1024"] / "synthetic.classes.tif")
    ref = naive_sliding_window(scene_3000, fcn_model, TILE, OVERLAP)
    np.testing.assert_array_equal(ours, ref)


def test_exact_polygons(runs):
    outdir = runs["chunk1024"]
    classes = read_classes(outdir / "synthetic.classes.tif")
    df = pyogrio.read_dataframe(outdir / "synthetic.landcover.gpkg", layer="landcover")
    n_ref = sum(1 for _, v in rasterio.features.shapes(classes, connectivity=4) if v != NODATA)
    assert len(df) == n_ref
    geoms = df.geometry.values
    assert shapely.is_valid(geoms).all()
    assert set(df.geom_type) == {"Polygon"}
    union = shapely.union_all(geoms)
    assert union.area == pytest.approx(shapely.area(geoms).sum(), rel=1e-9)  # no overlaps
    pixel_area = 0.1 * 0.1
    for cid in range(6):
        sel = df.class_id == cid
        assert df.area_m2[sel].sum() == pytest.approx((classes == cid).sum() * pixel_area, rel=1e-9, abs=1e-9)
    assert {"class_id", "class_name", "area_m2", "perimeter_m", "mean_confidence"} <= set(df.columns)
    assert (df.class_name[df.class_id == 1] == "building").all()
    assert df.mean_confidence.between(0, 1).all()


def test_outputs_keep_the_scene_grid_and_report(runs, scene_3000):
    outdir = runs["chunk4096"]
    with rasterio.open(scene_3000) as src, rasterio.open(outdir / "synthetic.classes.tif") as cls:
        assert cls.crs == src.crs and cls.transform == src.transform and cls.shape == src.shape
        assert cls.dtypes[0] == "uint8" and cls.nodata == NODATA
        assert cls.colormap(1)[1] == (0, 0, 255, 255)
        assert cls.overviews(1)  # COG with overviews
    import sqlite3

    with sqlite3.connect(outdir / "synthetic.landcover.gpkg") as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47  # 'GPKG'
        assert db.execute("PRAGMA user_version").fetchone()[0] == 10200  # 1.2: read by GDAL >= 2.2, QGIS 3.x
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'rtree_landcover_geom'").fetchone()[0]
    info = pyogrio.read_info(outdir / "synthetic.landcover.gpkg", layer="landcover")
    assert info["crs"].endswith("32633") and info["geometry_type"] == "Polygon"
    report = json.loads((outdir / "synthetic.run.json").read_text())
    assert report["model"]["sha256"] and report["parameters"]["chunk"] == 4096
    assert {"segment", "vectorize", "export", "total"} <= set(report["timings_s"])
    assert report["task_seconds"]["predict"] > 0
    assert sum(c["pixels"] for c in report["classes"]) == 3000 * 2500
    assert not (outdir / "synthetic.zarr").exists()  # working store removed after success


def test_nodata_alpha_and_masks_become_255_and_no_polygon(tmp_path, fcn_model):
    img = smooth_image(300, 260, bands=3, seed=5)
    alpha = np.full((1, 300, 260), 255, np.uint8)
    alpha[0, 40:120, 30:200] = 0
    alpha[0, :, 240:] = 0
    path = write_tif(tmp_path / "alpha.tif", np.concatenate([img, alpha]), photometric="RGB", alpha="YES")
    res = run(RunConfig(scene=path, model=fcn_model, outdir=tmp_path, tile=128, overlap=32, chunk=200))
    classes = read_classes(res.outputs["classes"])
    np.testing.assert_array_equal(classes == NODATA, alpha[0] == 0)
    df = pyogrio.read_dataframe(res.outputs["landcover"], layer="landcover")
    t = Affine(0.5, 0, 500000.0, 0, -0.5, 5800000.0)
    (x0, y0), (x1, y1) = t @ (31, 41), t @ (199, 119)  # the masked box, shrunk by one pixel
    hole = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    assert hole.area > 1000
    assert shapely.intersection(shapely.union_all(df.geometry.values), hole).area == pytest.approx(0, abs=1e-9)
    assert res.valid_pixels == (alpha[0] > 0).sum()


def test_scene_smaller_than_one_tile(tmp_path, fcn_model):
    path = write_tif(tmp_path / "tiny.tif", smooth_image(37, 53, seed=2))
    res = run(RunConfig(scene=path, model=fcn_model, outdir=tmp_path))
    with rasterio.open(res.outputs["classes"]) as ds:
        assert ds.shape == (37, 53)
        assert (ds.read(1) != NODATA).all()
    assert res.report.grid.tiles_run == 1


def test_geographic_scene_areas_are_square_metres(tmp_path, fcn_model):
    """EPSG:4326 at 60 S: area_m2 agrees with an equal-area projection of the same polygons."""
    t = Affine(2e-6, 0, 138.6, 0, -2e-6, -34.9)
    path = write_tif(tmp_path / "geo.tif", smooth_image(300, 300, seed=4), crs="EPSG:4326", transform=t)
    res = run(RunConfig(scene=path, model=fcn_model, outdir=tmp_path, tile=128, overlap=32))
    df = pyogrio.read_dataframe(res.outputs["landcover"], layer="landcover")
    laea = df.geometry.to_crs("+proj=laea +lat_0=-34.9003 +lon_0=138.6003 +datum=WGS84")
    assert res.report.area_method == "geodesic"
    np.testing.assert_allclose(df.area_m2, laea.area, rtol=1e-4)
    # 300 x 300 pixels of 2e-6 degrees: about 0.1826 m x 0.2219 m each at 34.9 S
    assert df.area_m2.sum() == pytest.approx(300 * 300 * 0.18264 * 0.22194, rel=2e-3)


def test_interrupted_store_is_resumed(tmp_path, fcn_model):
    path = write_tif(tmp_path / "r.tif", smooth_image(400, 400, seed=9))
    cfg = dict(scene=path, model=fcn_model, tile=128, overlap=32, chunk=192)
    first = run(RunConfig(outdir=tmp_path / "a", keep_intermediate=True, **cfg))
    # simulate a run killed after some blocks: drop half the completion markers and the outputs
    import zarr

    done = zarr.open_array(str(first.outputs["store"] / "done"), mode="r+")
    done[: done.shape[0] // 2] = 0
    for key in ("classes", "landcover", "report"):
        first.outputs[key].unlink()
    again = run(RunConfig(outdir=tmp_path / "a", **cfg))
    assert 0 < again.resumed_blocks < done.size
    fresh = run(RunConfig(outdir=tmp_path / "b", **cfg))
    assert sha256(again.outputs["classes"]) == sha256(fresh.outputs["classes"])


def test_min_area_and_simplify_keep_a_valid_partition(tmp_path, fcn_model):
    path = tmp_path / "clean.tif"
    write_scene(SceneSpec(width=700, height=600, pixel_size=0.1, seed=3), path)
    exact = run(
        RunConfig(
            scene=path,
            model=fcn_model,
            outdir=tmp_path / "exact",
            tile=256,
            overlap=32,
            chunk=300,
            simplify=0,
            min_area=0,
        )
    )
    clean = run(
        RunConfig(
            scene=path,
            model=fcn_model,
            outdir=tmp_path / "clean",
            tile=256,
            overlap=32,
            chunk=300,
            min_area=1.0,
            simplify=0.15,
        )
    )
    df = pyogrio.read_dataframe(clean.outputs["landcover"], layer="landcover")
    geoms = df.geometry.values
    assert clean.n_polygons < exact.n_polygons
    assert shapely.is_valid(geoms).all()
    pixel_area = 0.01
    # no region below the 1 m² mapping unit; simplification may shave a few percent off the smallest
    assert (df.area_m2 >= 0.9).all()
    union = shapely.union_all(geoms)
    assert union.area == pytest.approx(shapely.area(geoms).sum(), rel=1e-6)  # no overlaps
    assert union.area == pytest.approx(700 * 600 * pixel_area, rel=1e-6)  # no gaps
    # the class COG is the cleaned map the polygons describe
    cleaned = read_classes(clean.outputs["classes"])
    assert sum(1 for _, v in rasterio.features.shapes(cleaned, connectivity=4) if v != NODATA) == len(df)
    for cid in range(6):
        assert df.area_m2[df.class_id == cid].sum() == pytest.approx(
            (cleaned == cid).sum() * pixel_area, rel=0.01, abs=0.05
        )
    exact_df = pyogrio.read_dataframe(exact.outputs["landcover"], layer="landcover")
    assert shapely.get_num_coordinates(geoms).sum() < shapely.get_num_coordinates(exact_df.geometry.values).sum()


def test_local_process_cluster_gives_the_same_bytes(tmp_path, fcn_model):
    path = tmp_path / "cl.tif"
    write_scene(SceneSpec(width=900, height=700, pixel_size=0.1, seed=5), path)
    kw = dict(scene=path, model=fcn_model, tile=256, overlap=32, chunk=300)
    a = run(RunConfig(outdir=tmp_path / "a", **kw))
    b = run(RunConfig(outdir=tmp_path / "b", scheduler="local:2", **kw))
    assert sha256(a.outputs["classes"]) == sha256(b.outputs["classes"])


def test_preview_png_shows_scene_overlay_and_legend(tmp_path, fcn_model):
    from PIL import Image

    path = tmp_path / "p.tif"
    write_scene(SceneSpec(width=1000, height=600, pixel_size=0.1, seed=2, nodata=0), path)
    res = run(RunConfig(scene=path, model=fcn_model, outdir=tmp_path, tile=256, overlap=32, preview=True))
    img = np.asarray(Image.open(res.outputs["preview"]).convert("RGB"))
    h, w = 480, 800  # the scene scaled to at most 800 px per panel
    assert img.shape[1] == 2 * w + 30 and img.shape[0] > h + 40
    left, right = img[10 : 10 + h, 10 : 10 + w], img[10 : 10 + h, 20 + w : 20 + 2 * w]
    with rasterio.open(res.outputs["classes"]) as ds:
        known = ds.read(1, out_shape=(h, w)) != NODATA
    assert 0 < known.mean() < 1  # the scene has a nodata part
    # the right panel blends class colours over the scene; the left one is the scene alone
    assert np.abs(right[known].astype(int) - left[known].astype(int)).mean() > 10
    np.testing.assert_array_equal(right[~known], left[~known])
    legend = img[10 + h :]
    for c in res.report.classes:  # a swatch of every class colour in the legend
        rgb = [int(c.color[i : i + 2], 16) for i in (1, 3, 5)]
        assert (legend == rgb).all(-1).sum() > 100, c.name
