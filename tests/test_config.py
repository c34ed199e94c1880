"""Run settings: defined once (RunOptions), validated with one-line messages, shared by run and batch jobs."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from geoseg.batch import BatchJob, load_job
from geoseg.cli.run import run as run_command
from geoseg.config import ENGINES, PRECISIONS, RunConfig, RunOptions
from geoseg.errors import ConfigError
from geoseg.tiling import DEFAULT_OVERLAP


def build(**values):
    return RunConfig.build(scene="s.tif", model="m.pt", **values)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"tile": 500}, "invalid tile: tile size must be a multiple of 32 (the encoder's stride); try 512"),
        ({"overlap": 31}, "invalid overlap: overlap must be even; try 32"),
        ({"device": "gpu"}, "invalid device: use auto, cpu, cuda or cuda:N"),
        ({"scheduler": "dask"}, "invalid scheduler: use threads, processes, synchronous, local:N or tcp://HOST:PORT"),
        ({"precision": "int4"}, "invalid precision:"),
        ({"min_area": -1}, "invalid min_area:"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_setting(values, message):
    with pytest.raises(ConfigError) as err:
        build(**values)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_run_is_its_options_plus_scene_model_and_outputs():
    assert set(RunOptions.model_fields) < set(RunConfig.model_fields)
    extra = set(RunConfig.model_fields) - set(RunOptions.model_fields)
    assert extra == {"scene", "model", "outdir", "name", "overwrite", "scheduler", "workers"}
    cfg = build()
    assert cfg.overlap == DEFAULT_OVERLAP and cfg.precision == "auto"


def test_the_command_line_offers_the_same_choices_and_defaults():
    params = {p.name: p for p in run_command.params}
    assert params["overlap"].default == DEFAULT_OVERLAP == RunOptions().overlap
    assert isinstance(params["precision"].type, click.Choice)
    assert tuple(params["precision"].type.choices) == PRECISIONS
    assert tuple(params["engine"].type.choices) == ENGINES and params["engine"].default == RunOptions().engine


def test_a_job_run_section_is_checked_like_geoseg_run(tmp_path: Path):
    job = tmp_path / "job.yaml"
    job.write_text("region: r\nscenes: [a.tif]\noutput: out\nrun:\n  tile: 500\n")
    with pytest.raises(
        ConfigError, match=r"^job.yaml: run.tile: tile size must be a multiple of 32.*try 512 \(got 500\)$"
    ):
        load_job(job)
    job.write_text("region: r\nscenes: [a.tif]\noutput: out\nscheduler: dask\n")
    with pytest.raises(ConfigError, match=r"^job.yaml: scheduler: use threads"):
        load_job(job)
    job.write_text("region: r\nscenes: [a.tif]\noutput: out\nrun:\n  overlap: 32\n  precision: fp32\n")
    loaded = load_job(job)
    assert isinstance(loaded, BatchJob) and loaded.run == RunOptions(overlap=32, precision="fp32")
    cfg = loaded.run_config(tmp_path / "a.tif", tmp_path / "m.pt")
    assert cfg.overlap == 32 and cfg.precision == "fp32" and cfg.overwrite
