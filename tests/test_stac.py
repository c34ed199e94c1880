"""STAC sources in regional jobs: ItemCollections of served COGs, static catalogs of local files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pystac
import pytest
import rasterio
import yaml
from affine import Affine

from geoseg.batch import load_job, run_batch, scene_paths
from geoseg.errors import ConfigError
from geoseg.stac import StacScene, stac_scenes
from tests.conftest import invoke, smooth_image
from tests.rangeserver import RangeServer

SIDE = 384


def write_cog(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "COG",
        "width": SIDE,
        "height": SIDE,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": Affine(0.25, 0, 500_000 + seed * SIDE * 0.25, 0, -0.25, 5_500_000),
        "blocksize": 256,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(smooth_image(SIDE, SIDE, seed=seed))
    return path


def item(item_id: str, assets: dict[str, str]) -> pystac.Item:
    it = pystac.Item(
        item_id,
        geometry={"type": "Polygon", "coordinates": [[[14, 49], [14.1, 49], [14.1, 49.1], [14, 49]]]},
        bbox=[14, 49, 14.1, 49.1],
        datetime=datetime(2026, 6, 1, tzinfo=UTC),
        properties={},
    )
    for key, href in assets.items():
        it.add_asset(key, pystac.Asset(href, media_type=pystac.MediaType.COG))
    return it


def write_items(path: Path, items: list[pystac.Item]) -> Path:
    path.write_text(json.dumps(pystac.ItemCollection(items).to_dict()))
    return path


def write_job(folder: Path, model: Path, scenes: list[object], name: str = "job.yaml") -> Path:
    job = folder / name
    values = {"region": "r", "scenes": scenes, "model": str(model), "output": "out", "merge": False}
    job.write_text(yaml.safe_dump(values))
    return job


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RangeServer, Path]]:
    """Two items' COGs, both named visual.tif, on a Range server."""
    root = tmp_path_factory.mktemp("www")
    write_cog(root / "a" / "visual.tif", seed=1)
    write_cog(root / "b" / "visual.tif", seed=2)
    with RangeServer(root) as server:
        yield server, root


def test_item_collection_maps_each_item_under_its_id_as_the_local_run(served, tmp_path, fcn_model):
    server, root = served
    items = [
        item("item-a", {"visual": server.url("a/visual.tif") + "?token=SECRET", "thumbnail": server.url("a/t.png")}),
        item("item-b", {"visual": server.url("b/visual.tif")}),
    ]
    write_items(tmp_path / "items.json", items)
    job = load_job(write_job(tmp_path, fcn_model, [{"stac": "items.json", "asset": "visual"}]))
    assert scene_paths(job) == [
        StacScene(server.url("a/visual.tif") + "?token=SECRET", "item-a"),
        StacScene(server.url("b/visual.tif"), "item-b"),
    ]
    first = run_batch(job)
    assert [(o.scene, o.status) for o in first.scenes] == [("item-a", "done"), ("item-b", "done")], first.scenes
    assert first.scenes[0].path == server.url("a/visual.tif")
    out = tmp_path / "out" / "scenes"
    assert sorted(p.name for p in out.glob("*.classes.tif")) == ["item-a.classes.tif", "item-b.classes.tif"]
    for sub, item_id in (("a", "item-a"), ("b", "item-b")):
        local = tmp_path / "local" / sub
        code, text = invoke("run", root / sub / "visual.tif", "-m", fcn_model, "-o", local, "-q")
        assert code == 0, text
        assert (local / "visual.classes.tif").read_bytes() == (out / f"{item_id}.classes.tif").read_bytes()
        report = json.loads((out / f"{item_id}.run.json").read_text())
        assert report["scene"]["checksum"].startswith("etag:")
    assert "SECRET" not in first.manifest.read_text()
    server.reset()
    second = run_batch(job)
    assert [o.status for o in second.scenes] == ["skipped", "skipped"]
    assert server.bytes_sent < 100_000, "a current scene was read again"


def test_missing_asset_is_one_line_naming_the_item_and_its_keys(served, tmp_path, fcn_model):
    server, _ = served
    write_items(tmp_path / "items.json", [item("item-a", {"visual": server.url("a/visual.tif"), "nir": "n.tif"})])
    job_file = write_job(tmp_path, fcn_model, [{"stac": "items.json", "asset": "red"}])
    with pytest.raises(
        ConfigError, match=r"STAC item 'item-a' in .*items\.json has no asset 'red'; its assets: visual, nir"
    ):
        scene_paths(load_job(job_file))
    code, out = invoke("batch", job_file, "-q")
    assert code != 0 and "no asset 'red'" in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1, out
    # without `asset`: visual, else image, else the keys are named
    write_items(tmp_path / "plain.json", [item("x", {"image": "x.tif"}), item("y", {"data": "y.tif"})])
    with pytest.raises(ConfigError, match=r"item 'y' .* has no asset 'visual' or 'image' .*; its assets: data$"):
        stac_scenes(str(tmp_path / "plain.json"))
    # items without links: relative hrefs resolve against the ItemCollection's folder
    (tmp_path / "sub").mkdir()
    write_items(tmp_path / "sub" / "one.json", [item("x", {"image": "x.tif"})])
    assert stac_scenes(str(tmp_path / "sub" / "one.json")) == [StacScene(tmp_path / "sub" / "x.tif", "x")]


def test_static_catalog_resolves_child_collections_and_relative_asset_hrefs(tmp_path):
    cat = pystac.Catalog("region", "orthophotos")
    coll = pystac.Collection(
        "2026-06",
        "June flights",
        pystac.Extent(
            pystac.SpatialExtent([[14, 49, 14.1, 49.1]]),
            pystac.TemporalExtent([[datetime(2026, 6, 1, tzinfo=UTC), None]]),
        ),
    )
    cat.add_child(coll)
    for item_id in ("tile-1", "tile-2"):
        coll.add_item(item(item_id, {"image": "./image.tif", "visual_alt": "./other.tif"}))
    cat.normalize_hrefs(str(tmp_path / "stac"))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    scenes = stac_scenes(str(tmp_path / "stac" / "catalog.json"))
    folder = tmp_path / "stac" / "2026-06"
    assert scenes == [
        StacScene(folder / "tile-1" / "image.tif", "tile-1"),
        StacScene(folder / "tile-2" / "image.tif", "tile-2"),
    ]
    assert scenes == stac_scenes(str(tmp_path / "stac" / "2026-06" / "collection.json"))


def test_bad_sources_are_one_line_errors(tmp_path, fcn_model):
    write_items(tmp_path / "twice.json", [item("same", {"visual": "a.tif"}), item("same", {"visual": "b.tif"})])
    with pytest.raises(ConfigError, match=r"two STAC items in .*twice\.json have the id 'same'"):
        stac_scenes(str(tmp_path / "twice.json"))
    with pytest.raises(ConfigError, match=r"^scenes: cannot read STAC .*nothere\.json: "):
        stac_scenes(str(tmp_path / "nothere.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"^scenes: cannot read STAC .*broken\.json: [^\n]+$"):
        stac_scenes(str(tmp_path / "broken.json"))
    with pytest.raises(ConfigError, match=r"cannot read STAC http://127\.0\.0\.1:9/items\.json: "):
        stac_scenes("http://127.0.0.1:9/items.json?token=SECRET")
    search = write_job(tmp_path, fcn_model, [{"stac": "https://example.org/stac", "collections": ["s2"]}])
    with pytest.raises(ConfigError, match=r"STAC API searches .* are not read; save the search as an ItemCollection"):
        load_job(search)
    extra = write_job(tmp_path, fcn_model, [{"stac": "items.json", "band": 1}], name="extra.yaml")
    with pytest.raises(ConfigError, match=r"band"):
        load_job(extra)
