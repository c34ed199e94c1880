"""The plugin's command runner without QGIS: finding geoseg, following its JSON log, errors and Cancel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

import geoseg
from geoseg.qgis import PLUGIN_NAME, install_plugin, plugin_source, zip_plugin
from geoseg.qgis.plugin import runner
from tests.conftest import invoke

#: A stand-in for geoseg: behaves as its first argument says, writing what geoseg writes with --log-json.
FAKE = textwrap.dedent(
    """
    import json, signal, sys, time
    from pathlib import Path

    mode, marker = sys.argv[1], Path(sys.argv[2])
    assert sys.argv[-1] == "--log-json", sys.argv

    def say(**record):
        print(json.dumps({"level": "info", "logger": "geoseg", **record}), file=sys.stderr, flush=True)

    if mode == "ok":
        say(message="segment 1/2 (40 %)", event="progress", stage="segment", done=1, total=2, fraction=0.4)
        say(level="warning", message="3 bands assumed in the file's order")
        print("RuntimeWarning: invalid value", file=sys.stderr, flush=True)
        say(message="export 1/1 (100 %)", event="progress", stage="export", done=1, total=1, fraction=1.0)
        say(message="outputs", event="result", outputs={"landcover": "x.gpkg"}, polygons=3)
    elif mode == "fail":
        say(message="engine: torch")
        print("Error: scene has 4 bands but model expects 3; pass --bands 1,2,3", file=sys.stderr, flush=True)
        sys.exit(1)
    elif mode == "wait":
        def stop(signum, frame):
            marker.write_text("stopped cleanly")
            print("Interrupted; run the same command again to resume.", file=sys.stderr, flush=True)
            sys.exit(130)
        signal.signal(signal.SIGTERM, stop)
        say(message="segment 1/9", event="progress", stage="segment", done=1, total=9, fraction=0.1)
        while True:
            time.sleep(0.05)
    """
)


@pytest.fixture
def fake(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_geoseg.py"
    script.write_text(FAKE)
    return [sys.executable, str(script)]


def test_run_reports_progress_log_text_and_result(fake: list[str], tmp_path: Path) -> None:
    seen: dict[str, list] = {"progress": [], "record": [], "text": []}
    result = runner.run(
        fake,
        ["ok", str(tmp_path / "m")],
        on_progress=lambda f, r: seen["progress"].append((f, r["stage"])),
        on_record=lambda r: seen["record"].append((r["level"], r["message"])),
        on_text=seen["text"].append,
    )
    assert result["outputs"] == {"landcover": "x.gpkg"} and result["polygons"] == 3
    assert seen["progress"] == [(0.4, "segment"), (1.0, "export")]
    assert seen["record"] == [("warning", "3 bands assumed in the file's order")]
    assert seen["text"] == ["RuntimeWarning: invalid value"]


def test_user_error_is_geosegs_one_line(fake: list[str], tmp_path: Path) -> None:
    with pytest.raises(runner.CommandFailed) as info:
        runner.run(fake, ["fail", str(tmp_path / "m")])
    assert str(info.value) == "scene has 4 bands but model expects 3; pass --bands 1,2,3"
    assert info.value.status == 1


def test_cancel_sends_sigterm_and_waits_for_the_clean_stop(fake: list[str], tmp_path: Path) -> None:
    marker = tmp_path / "m"
    progress: list[float] = []
    t0 = time.monotonic()
    with pytest.raises(runner.Cancelled, match="run again with the same parameters to resume"):
        runner.run(
            fake,
            ["wait", str(marker)],
            on_progress=lambda f, r: progress.append(f),
            is_cancelled=lambda: bool(progress),
        )
    assert marker.read_text() == "stopped cleanly"  # SIGTERM, handled: not killed outright
    assert time.monotonic() - t0 < 10


def test_find_executable_order_and_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "geoseg").write_text("#!/bin/sh\n")
    monkeypatch.delenv(runner.EXECUTABLE_ENV, raising=False)
    assert runner.find_executable(str(venv)) == [str(venv / "bin" / "geoseg")]
    assert runner.find_executable(sys.executable) == [sys.executable, "-m", "geoseg"]
    monkeypatch.setenv(runner.EXECUTABLE_ENV, str(venv / "bin" / "geoseg"))
    assert runner.find_executable(sys.executable) == [str(venv / "bin" / "geoseg")]  # the variable wins
    monkeypatch.setenv(runner.EXECUTABLE_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(runner.GeosegNotFound, match=r"\$GEOSEG_EXECUTABLE names .*nowhere.*Providers > geoseg"):
        runner.find_executable()


def test_command_env_drops_qgis_python_and_gdal_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONHOME", "/opt/qgis/apps/Python39")
    monkeypatch.setenv("PROJ_LIB", "/opt/qgis/share/proj")
    monkeypatch.setenv("GEOSEG_HOME", "/data/geoseg")
    env = runner.command_env()
    assert "PYTHONHOME" not in env and "PROJ_LIB" not in env
    assert env["GEOSEG_HOME"] == "/data/geoseg" and env["PYTHONIOENCODING"] == "utf-8"


# -- geoseg qgis install / zip --------------------------------------------------------------------


def test_metadata_declares_a_processing_provider_for_qgis_3_22() -> None:
    meta = dict(
        line.split("=", 1) for line in (plugin_source() / "metadata.txt").read_text().splitlines() if "=" in line
    )
    assert meta["hasProcessingProvider"] == "yes"
    assert meta["qgisMinimumVersion"] == "3.22"
    assert meta["version"] == geoseg.__version__
    assert (plugin_source() / meta["icon"]).is_file()


def test_install_copies_enables_and_records_this_geoseg(tmp_path: Path) -> None:
    profile = tmp_path / "profiles" / "work"
    (profile / "QGIS").mkdir(parents=True)
    (profile / "QGIS" / "QGIS3.ini").write_text("[PythonPlugins]\nother=false\n\n[Processing]\nConfiguration\\X=1\n")
    code, out = invoke("qgis", "install", "--profile", "work", "--profiles-dir", tmp_path / "profiles")
    assert code == 0, out
    target = profile / "python" / "plugins" / PLUGIN_NAME
    assert f"-> {target}" in out
    assert {p.name for p in plugin_source().glob("*.py")} <= {p.name for p in target.iterdir()}
    assert not list(target.rglob("__pycache__"))
    ini = (profile / "QGIS" / "QGIS3.ini").read_text()
    assert ini == f"[PythonPlugins]\n{PLUGIN_NAME}=true\nother=false\n\n[Processing]\nConfiguration\\X=1\n"
    recorded = json.loads((target / "geoseg.json").read_text())["executable"]
    assert os.access(recorded, os.X_OK)
    # installing again replaces the copy and keeps one entry
    install_plugin("work", root=tmp_path / "profiles")
    assert (profile / "QGIS" / "QGIS3.ini").read_text().count(PLUGIN_NAME) == 1


def test_qgis_commands_import_no_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from geoseg.cli import main\n"
        f"try:\n    main(['qgis', 'zip', '-o', {str(tmp_path / 'p.zip')!r}])\n"
        "except SystemExit as e:\n    assert not e.code\n"
        "assert 'torch' not in sys.modules and 'rasterio' not in sys.modules, 'heavy import'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p.zip").is_file()


def test_zip_holds_the_plugin_folder(tmp_path: Path) -> None:
    code, out = invoke("qgis", "zip", "-o", tmp_path / "p.zip")
    assert code == 0, out
    names = zipfile.ZipFile(zip_plugin(tmp_path / "p.zip")).namelist()
    assert f"{PLUGIN_NAME}/metadata.txt" in names and f"{PLUGIN_NAME}/__init__.py" in names
    assert all(n.startswith(f"{PLUGIN_NAME}/") for n in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith("geoseg.json")]
