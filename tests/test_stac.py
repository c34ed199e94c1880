"""STAC sources in regional jobs: ItemCollections of served COGs, static catalogs of local files, STAC API searches."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pystac
import pytest
import rasterio
import yaml
from affine import Affine

from geoseg.batch import load_job, run_batch, scene_paths
from geoseg.errors import ConfigError
from geoseg.stac import HEADERS_ENV, StacScene, stac_scenes, stac_search
from tests.conftest import invoke, smooth_image
from tests.rangeserver import RangeServer
from tests.stacapi import StacApi

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
    search = write_job(tmp_path, fcn_model, [{"stac": "https://example.org/stac", "bbox": [14, 49.1, 14.1, 49]}])
    with pytest.raises(ConfigError, match=r"bbox must be \[west, south, east, north\]"):
        load_job(search)
    extra = write_job(tmp_path, fcn_model, [{"stac": "items.json", "band": 1}], name="extra.yaml")
    with pytest.raises(ConfigError, match=r"band"):
        load_job(extra)


# STAC API searches: a loopback API whose items' assets are the served COGs

REGION = [14.0, 49.0, 14.2, 49.2]
JUNE = "2026-06-01/2026-06-30"


def api_item(item_id: str, when: str, href: str, collection: str = "ortho", lon: float = 14.05) -> dict[str, object]:
    """An item as a STAC API returns it: a 0.05° square at `lon`, 49.05° N, with its `updated` time."""
    box = [lon, 49.05, lon + 0.05, 49.1]
    it = pystac.Item(
        item_id,
        geometry={"type": "Polygon", "coordinates": [[[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], box[:2]]]},
        bbox=box,
        datetime=datetime.fromisoformat(when),
        properties={"updated": "2026-07-01T08:00:00Z"},
        collection=collection,
    )
    it.add_asset("visual", pystac.Asset(href, media_type=pystac.MediaType.COG))
    data = it.to_dict(include_self_link=False)
    data["links"] = []
    data["collection"] = collection
    return data


@pytest.fixture(scope="module")
def api_items(served) -> list[dict[str, object]]:
    """Three June orthophotos in the region (one asset URL signed), and one each outside the date, box, collection."""
    server, root = served
    write_cog(root / "c" / "visual.tif", seed=3)
    return [
        api_item("june-a", "2026-06-05T10:00:00+00:00", server.url("a/visual.tif") + "?sig=SIGNATURE"),
        api_item("may-a", "2026-05-15T10:00:00+00:00", server.url("may/visual.tif")),
        api_item("june-b", "2026-06-20T10:00:00+00:00", server.url("b/visual.tif")),
        api_item("far-a", "2026-06-10T10:00:00+00:00", server.url("far/visual.tif"), lon=20.0),
        api_item("dsm-a", "2026-06-10T10:00:00+00:00", server.url("dsm/dsm.tif"), collection="dsm"),
        api_item("june-c", "2026-06-29T10:00:00+00:00", server.url("c/visual.tif")),
    ]


def ids(scenes: list[StacScene]) -> list[str]:
    return [s.name for s in scenes]


def test_search_filters_by_collections_bbox_and_datetime_and_follows_next_links(api_items):
    with StacApi(api_items, page_size=2) as api:
        ortho = stac_search(api.url, {"collections": ["ortho"]})
        assert ids(ortho.scenes) == ["june-a", "may-a", "june-b", "far-a", "june-c"]
        assert ids(stac_search(api.url, {"collections": ["ortho"], "bbox": REGION}).scenes) == [
            "june-a",
            "may-a",
            "june-b",
            "june-c",
        ]
        assert ids(stac_search(api.url, {"collections": ["ortho"], "datetime": JUNE}).scenes) == [
            "june-a",
            "june-b",
            "far-a",
            "june-c",
        ]
        api.requests.clear()
        found = stac_search(api.url, {"collections": ["ortho"], "bbox": REGION, "datetime": JUNE}, asset="visual")
        assert ids(found.scenes) == ["june-a", "june-b", "june-c"]
        pages = api.searches()
        assert [(m, (body or {}).get("page")) for m, _, body in pages] == [("POST", None), ("POST", 1)]
        assert pages[0][2] is not None and pages[0][2]["collections"] == ["ortho"]
    assert found.record["items"][0] == {
        "id": "june-a",
        "collection": "ortho",
        "updated": "2026-07-01T08:00:00Z",
        "href": api_items[0]["assets"]["visual"]["href"].split("?")[0],  # type: ignore[index]
    }
    assert found.record["search"] == {"collections": ["ortho"], "bbox": REGION, "datetime": JUNE, "max_items": 1000}
    assert found.record["more"] is False


def test_get_only_api_declares_conformance_apart_and_max_items_bounds_the_search(api_items, caplog):
    with StacApi(api_items, page_size=2, methods=("GET",), conforms_on_landing=False) as api:
        with caplog.at_level(logging.WARNING, logger="geoseg"):
            found = stac_search(api.url, {"collections": ["ortho"], "datetime": JUNE}, max_items=3)
        assert ids(found.scenes) == ["june-a", "june-b", "far-a"]
        assert found.record["more"] is True and found.record["method"] == "GET"
        assert "matched more than max_items=3 items" in caplog.text
        pages = [urlsplit(path) for method, path, _ in api.searches() if method == "GET"]
        assert len(pages) == 2 and "page=1" in pages[1].query, api.requests
        # a search that matches exactly max_items is not cut short
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="geoseg"):
            exact = stac_search(api.url, {"collections": ["ortho"], "datetime": JUNE}, max_items=4)
        assert len(exact.scenes) == 4 and exact.record["more"] is False and "max_items" not in caplog.text


def test_job_from_a_search_maps_its_items_as_the_local_run_and_keeps_the_token_out(
    served, api_items, tmp_path, fcn_model, monkeypatch
):
    server, root = served
    monkeypatch.setenv(HEADERS_ENV, json.dumps({"Authorization": "Bearer HEADERSECRET"}))
    with StacApi(api_items, page_size=2, token="SECRET") as api:
        entry = {
            "stac": api.url + "?token=SECRET",
            "collections": ["ortho"],
            "bbox": REGION,
            "datetime": JUNE,
            "asset": "visual",
            "max_items": 10,
        }
        job_file = write_job(tmp_path, fcn_model, [entry])
        log_file = tmp_path / "batch.log"
        code, text = invoke("batch", job_file, "-q", "--log-file", log_file)
        assert code == 0, text
        assert len(api.searches()) == 2, "the second page was not asked for"
        assert set(api.authorizations) == {"Bearer HEADERSECRET"}
        out = tmp_path / "out" / "scenes"
        assert sorted(p.name for p in out.glob("*.classes.tif")) == [
            "june-a.classes.tif",
            "june-b.classes.tif",
            "june-c.classes.tif",
        ]
        for sub, item_id in (("a", "june-a"), ("b", "june-b"), ("c", "june-c")):
            local = tmp_path / "local" / sub
            code, text = invoke("run", root / sub / "visual.tif", "-m", fcn_model, "-o", local, "-q")
            assert code == 0, text
            assert (local / "visual.classes.tif").read_bytes() == (out / f"{item_id}.classes.tif").read_bytes()
        manifest_text = (tmp_path / "out" / "r.manifest.json").read_text()
        manifest = json.loads(manifest_text)
        (search,) = manifest["stac_searches"]
        assert search["stac"] == api.url
        assert [i["id"] for i in search["items"]] == ["june-a", "june-b", "june-c"]
        assert search["items"][0]["href"] == server.url("a/visual.tif")
        assert {i["updated"] for i in search["items"]} == {"2026-07-01T08:00:00Z"}
        assert manifest["settings"]["scenes"][0]["stac"] == api.url
        for secret in ("SECRET", "SIGNATURE"):
            assert secret not in manifest_text and secret not in log_file.read_text() and secret not in text
        assert "the STAC search found 3 items" in log_file.read_text()
        # a scheduled rerun searches again and skips the items whose assets are unchanged
        server.reset()
        again = run_batch(load_job(job_file))
        assert [(o.scene, o.status) for o in again.scenes] == [
            ("june-a", "skipped"),
            ("june-b", "skipped"),
            ("june-c", "skipped"),
        ]
        assert server.bytes_sent < 100_000, "a current scene was read again"


def test_bad_searches_are_one_line_errors(served, api_items, tmp_path, fcn_model, monkeypatch, caplog):
    server, root = served
    where = {"collections": ["ortho"]}
    monkeypatch.setenv(HEADERS_ENV, json.dumps({"Authorization": "Bearer HEADERSECRET"}))
    refused = r"^scenes: cannot search STAC API http://127\.0\.0\.1:9/: cannot connect"
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigError, match=refused):  # HTTP libraries' logs too
        stac_search("http://127.0.0.1:9/?token=SECRET", where)
    assert "127.0.0.1" in caplog.text and "SECRET" not in caplog.text
    monkeypatch.delenv(HEADERS_ENV)
    bad = write_job(tmp_path, fcn_model, [{"stac": "http://127.0.0.1:9/?token=SECRET", **where}])
    code, out = invoke("batch", bad, "-q")
    assert code != 0 and "cannot search STAC API" in out and "Traceback" not in out, out
    assert len(out.strip().splitlines()) == 1 and "SECRET" not in out, out
    # a static ItemCollection is read, not searched
    write_items(root / "items.json", [item("item-a", {"visual": "a/visual.tif"})])
    with pytest.raises(ConfigError, match=r"items\.json is no STAC API with item search"):
        stac_search(server.url("items.json"), where)
    with pytest.raises(ConfigError, match=r"a STAC search needs the http\(s\) URL of a STAC API"):
        stac_search(str(tmp_path / "items.json"), where)
    with StacApi(api_items, token="SECRET") as api:
        with pytest.raises(ConfigError, match=r"cannot search STAC API http://127\.0\.0\.1:\d+/: HTTP 401") as err:
            stac_search(api.url + "?token=WRONG", where)
        assert "WRONG" not in str(err.value)
        with pytest.raises(ConfigError, match=r"found no item \(collections \[\"ortho\"\], datetime \"2025\"\)"):
            stac_search(api.url + "?token=SECRET", where | {"datetime": "2025"})
        monkeypatch.setenv(HEADERS_ENV, "Authorization: Bearer HEADERSECRET")
        with pytest.raises(ConfigError, match=rf"^{HEADERS_ENV} must be a JSON object") as err:
            stac_search(api.url + "?token=SECRET", where)
        assert "HEADERSECRET" not in str(err.value)


def test_search_keys_make_the_entry_a_search_and_read_as_yaml_writes_them(tmp_path, fcn_model):
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        "region: r\noutput: out\nmodel: m.pt\n"
        "scenes:\n  - {stac: https://example.org/v1, collections: ortho, datetime: 2026-06-01}\n"
        "  - {stac: items.json}\n"
    )
    search, static = load_job(job_file).scenes
    assert not isinstance(search, str) and search.is_search
    assert search.search_parameters() == {"collections": ["ortho"], "datetime": "2026-06-01"}
    assert not isinstance(static, str) and not static.is_search
