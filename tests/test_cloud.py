"""Regional jobs in the cloud: scenes from S3 or from a STAC ItemCollection of HTTP COGs, outputs and working
stores in S3, scenes as tasks on a ``local:2`` cluster whose workers share no folder with the client.

The outputs are downloaded and compared with a local sequential batch of the same files, byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import pytest

from geoseg.synthetic import SceneSpec, write_scene
from tests.conftest import SECRET, assert_same_outputs, features, invoke, start, wait_for
from tests.pipeline.test_reliability import assert_tree_ends
from tests.rangeserver import RangeServer
from tests.test_batch import split_scene, write_job
from tests.test_stac import item, write_cog, write_items

STEMS = ("part0", "part1", "part2")
#: exact polygons, and 4 blocks per scene (a worker can be stopped part-way through one)
RUN = {"tile": 128, "chunk": 128, "min_area": 0, "simplify": 0}
#: the final objects of one scene
FINAL = ("classes.qml", "classes.tif", "classes.tif.aux.xml", "landcover.gpkg", "run.json")


@pytest.fixture(scope="module")
def region(tmp_path_factory, fcn_model) -> Path:
    """Three neighbouring scenes, mapped one after another into local folders: the reference (``ref/``)."""
    root = tmp_path_factory.mktemp("region")
    write_scene(SceneSpec(width=768, height=256, pixel_size=0.25, seed=23), root / "mosaic.tif")
    split_scene(root / "mosaic.tif", root / "scenes", 256)
    (root / "mosaic.tif").unlink()
    ref = write_job(
        root / "ref.yaml", region="ref", scenes=["scenes/*.tif"], model=str(fcn_model), output="ref", run=RUN
    )
    code, out = invoke("batch", ref, "-q")
    assert code == 0, out
    return root


def keys(s3, prefix: str) -> list[str]:
    found = s3.list_objects_v2(Bucket="bucket", Prefix=f"{prefix}/").get("Contents", [])
    return sorted(o["Key"].removeprefix(f"{prefix}/") for o in found)


def download(s3, prefix: str, to: Path) -> Path:
    for key in keys(s3, prefix):
        (to / key).parent.mkdir(parents=True, exist_ok=True)
        s3.download_file("bucket", f"{prefix}/{key}", str(to / key))
    return to


def finals(stems: tuple[str, ...], region: str) -> list[str]:
    """Every final object of a finished job: each scene's, the regional layer and the manifest."""
    return sorted(
        [f"scenes/{s}.{f}" for s in stems for f in FINAL] + [f"{region}.landcover.gpkg", f"{region}.manifest.json"]
    )


def assert_regional_equal(a: Path, b: Path) -> None:
    wa, ca = features(a)
    wb, cb = features(b)
    assert wa == wb
    for x, y in zip(ca, cb, strict=True):
        assert list(x) == list(y)


@pytest.mark.timeout(900)
def test_s3_batch_on_a_cluster_equals_the_local_batch_leaves_nothing_partial_when_killed_and_resumes(
    region, s3, fcn_model, tmp_path
):
    run = uuid.uuid4().hex[:8]
    for stem in STEMS:
        s3.upload_file(str(region / "scenes" / f"{stem}.tif"), "bucket", f"in-{run}/{stem}.tif")
    prefix = f"maps-{run}"
    job = write_job(
        tmp_path / "cloud.yaml",
        region="cloud",
        scenes=[f"s3://bucket/in-{run}/{stem}.tif" for stem in STEMS],
        model=str(fcn_model),
        output=f"s3://bucket/{prefix}",
        run=RUN,
        scheduler="local:2",
    )
    client = tmp_path / "client"
    client.mkdir()
    # the first worker to store its second block stops there; the client is then killed with all it started
    proc, marker = start("batch", job, "-q", cwd=client, failpoint="segment:2")
    wait_for(proc, marker)
    os.kill(proc.pid, signal.SIGKILL)
    assert_tree_ends(proc)
    assert sorted(os.listdir(client)) == [marker.name]  # the client and its workers wrote nothing here

    left = keys(s3, prefix)
    assert "cloud.landcover.gpkg" not in left
    unfinished = []
    for stem in STEMS:
        present = [f for f in FINAL if f"scenes/{stem}.{f}" in left]
        assert present in ([], list(FINAL)), (stem, present)  # a scene's outputs are all there, or none is
        if not present:
            unfinished.append(stem)
    assert unfinished, left  # the stopped worker's scene was not finished ...
    stored = {s: sum(k.startswith(f"scenes/{s}.zarr/done/c/") for k in left) for s in unfinished}
    assert sum(stored.values()) >= 2, stored  # ... and the blocks it had stored are kept

    code, out = invoke("batch", job, "-q")  # the same job, resuming from the stores in S3
    assert code == 0, out
    assert keys(s3, prefix) == finals(STEMS, "cloud")  # nothing but final objects: no store, no lock
    got = download(s3, prefix, tmp_path / "got")
    for stem in STEMS:
        assert_same_outputs(region / "ref" / "scenes", got / "scenes", stem)
    assert_regional_equal(region / "ref" / "ref.landcover.gpkg", got / "cloud.landcover.gpkg")
    manifest = json.loads((got / "cloud.manifest.json").read_text())
    assert manifest["counts"]["done"] + manifest["counts"]["skipped"] == 3
    resumed = {s["scene"]: s["resumed_blocks"] for s in manifest["scenes"]}
    assert {s: resumed[s] for s in unfinished} == stored  # the rerun went on from every block stored in S3
    assert manifest["scenes"][0]["outputs"]["classes"] == f"s3://bucket/{prefix}/scenes/part0.classes.tif"
    assert SECRET not in (got / "cloud.manifest.json").read_text() + out


@pytest.mark.timeout(900)
def test_stac_items_served_over_http_map_into_s3_on_a_cluster_as_they_do_locally(s3, fcn_model, tmp_path):
    www = tmp_path / "www"
    for sub, seed in (("a", 1), ("b", 2)):
        write_cog(www / sub / "visual.tif", seed=seed)
    prefix = f"stac-{uuid.uuid4().hex[:8]}"
    with RangeServer(www) as server:
        items = [
            item("item-a", {"visual": server.url("a/visual.tif") + "?token=SIGNATURE"}),
            item("item-b", {"visual": server.url("b/visual.tif")}),
        ]
        write_items(tmp_path / "items.json", items)
        job = write_job(
            tmp_path / "stac.yaml",
            region="stac",
            scenes=[{"stac": "items.json", "asset": "visual"}],
            model=str(fcn_model),
            output=f"s3://bucket/{prefix}",
            run=RUN,
            scheduler="local:2",
        )
        code, out = invoke("batch", job, "-q")
        assert code == 0, out
        assert keys(s3, prefix) == finals(("item-a", "item-b"), "stac")
        got = download(s3, prefix, tmp_path / "got")
        for sub, item_id in (("a", "item-a"), ("b", "item-b")):
            local = tmp_path / "local" / sub
            code, text = invoke("run", www / sub / "visual.tif", "-m", fcn_model, "-o", local, "-q", *_flags(RUN))
            assert code == 0, text
            (local / "visual.classes.tif").rename(local / f"{item_id}.classes.tif")
            (local / "visual.landcover.gpkg").rename(local / f"{item_id}.landcover.gpkg")
            assert_same_outputs(local, got / "scenes", item_id)
        manifest = (got / "stac.manifest.json").read_text()
        assert "SIGNATURE" not in manifest and SECRET not in manifest

        code, out = invoke("batch", job, "-q")  # current: both skipped, read from S3's run.json
        assert code == 0, out
        again = json.loads(s3.get_object(Bucket="bucket", Key=f"{prefix}/stac.manifest.json")["Body"].read())
        assert again["counts"]["skipped"] == 2


def _flags(run: dict[str, int]) -> list[str]:
    return [x for k, v in run.items() for x in (f"--{k.replace('_', '-')}", str(v))]
