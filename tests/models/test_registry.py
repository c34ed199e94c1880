"""Installed models: the models folder, its index, downloads, and how `geoseg run` finds a model."""

from __future__ import annotations

import functools
import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from geoseg import models
from geoseg.errors import (
    CheckpointError,
    ChecksumError,
    ConfigError,
    GeosegError,
    GeosegIOError,
    ModelExistsError,
    ModelNotFoundError,
)
from geoseg.models import (
    get,
    install,
    list_models,
    models_dir,
    remove,
    resolve_model,
    set_default,
)
from geoseg.predict.checkpoint import model_hash, read_spec
from tests.conftest import invoke, smooth_image, write_tif


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty GEOSEG_HOME and no GEOSEG_MODEL."""
    home = tmp_path / "home"
    monkeypatch.setenv("GEOSEG_HOME", str(home))
    monkeypatch.delenv("GEOSEG_MODEL", raising=False)
    return home


@pytest.fixture
def count_urlopen(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every URL opened (the real urlopen still runs)."""
    calls: list[str] = []
    real = urllib.request.urlopen

    def urlopen(request: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(request.full_url if isinstance(request, urllib.request.Request) else str(request))
        return real(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server(fcn_model: Path) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` serving the folder that holds the fcn_model checkpoint."""
    handler = functools.partial(_QuietHandler, directory=str(fcn_model.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def folder_contents() -> list[str]:
    folder = models_dir()
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def index() -> dict[str, Any]:
    return json.loads((models_dir() / "index.json").read_text())


# -- the folder -------------------------------------------------------------------------------------------------------


def test_models_dir_follows_geoseg_home(home, monkeypatch):
    assert models_dir() == home / "models"
    import platformdirs

    monkeypatch.delenv("GEOSEG_HOME")
    assert models_dir() == platformdirs.user_data_path("geoseg") / "models"


def test_errors_derive_from_geoseg_error_and_a_builtin():
    assert issubclass(ModelNotFoundError, GeosegError) and issubclass(ModelNotFoundError, LookupError)
    assert issubclass(ModelExistsError, GeosegIOError) and issubclass(ModelExistsError, FileExistsError)
    assert issubclass(ChecksumError, GeosegIOError) and issubclass(ChecksumError, ValueError)


# -- install, list, default, remove -----------------------------------------------------------------------------------


def test_install_copies_and_registers(fcn_model):
    m = install(fcn_model)
    spec = read_spec(fcn_model)
    assert m.name == spec.name == "fcn_resnet18"
    assert m.path == models_dir() / "fcn_resnet18.pt" and m.path.is_file()
    assert fcn_model.is_file(), "the source must be copied, not moved"
    assert m.sha256 == model_hash(fcn_model) == model_hash(m.path)
    assert (m.arch, m.encoder, m.bands) == ("fcn", "resnet18", ("red", "green", "blue"))
    assert m.classes == spec.classes.names
    assert m.source == str(fcn_model.resolve()) and not m.is_default
    entry = index()["models"]["fcn_resnet18"]
    assert entry["sha256"] == model_hash(fcn_model) and entry["file"] == "fcn_resnet18.pt"
    assert index()["default"] is None, "installing never picks a default by itself"
    assert list_models() == [m]
    assert not [p for p in folder_contents() if p.startswith(".")], "temporary files left behind"


def test_default_and_remove(fcn_model):
    a = install(fcn_model, name="a")
    b = install(fcn_model, name="b", default=True)
    assert [m.name for m in list_models()] == ["a", "b"] and b.is_default
    assert set_default("a").is_default and get("a").is_default and not get("b").is_default
    assert index()["default"] == "a"
    removed = remove("a")
    assert removed.name == "a" and not a.path.exists()
    assert [m.name for m in list_models()] == ["b"] and index()["default"] is None
    with pytest.raises(ModelNotFoundError, match=r"no installed model named 'a'; installed: b"):
        get("a")
    with pytest.raises(ModelNotFoundError, match="installed: b"):
        set_default("zzz")
    with pytest.raises(ModelNotFoundError):
        remove("a")


def test_non_checkpoint_is_refused_and_leaves_nothing(tmp_path):
    fake = tmp_path / "notes.pt"
    fake.write_text("not a model")
    with pytest.raises(CheckpointError, match=r"notes\.pt is not a geoseg checkpoint"):
        install(fake)
    assert folder_contents() == []
    assert list_models() == []
    with pytest.raises(GeosegIOError, match="not found"):
        install(tmp_path / "missing.pt")


def test_duplicate_name_needs_overwrite(fcn_model, fcn_model_4band):
    install(fcn_model, name="m")
    with pytest.raises(ModelExistsError, match="pass --overwrite to replace it or --name"):
        install(fcn_model_4band, name="m")
    assert get("m").bands == ("red", "green", "blue"), "the refused install must not change the model"
    m = install(fcn_model_4band, name="m", overwrite=True)
    assert m.sha256 == model_hash(fcn_model_4band) and len(m.bands) == 4
    assert [x.name for x in list_models()] == ["m"]


def test_invalid_names_are_refused(fcn_model):
    for bad in ("bad name", "../up", ".hidden", ""):
        with pytest.raises(ConfigError, match="invalid model name"):
            install(fcn_model, name=bad)
    assert folder_contents() == []


def test_local_install_checks_sha256(fcn_model):
    with pytest.raises(ChecksumError, match=model_hash(fcn_model)):
        install(fcn_model, sha256="0" * 64)
    assert list_models() == [] and not [p for p in folder_contents() if p.endswith(".pt")]
    with pytest.raises(ConfigError, match="64 hexadecimal digits"):
        install(fcn_model, sha256="abc")


# -- URLs -------------------------------------------------------------------------------------------------------------


def test_file_url_with_checksum_is_downloaded_once(fcn_model, count_urlopen):
    digest = model_hash(fcn_model)
    url = f"{fcn_model.as_uri()}#sha256={digest}"
    seen: list[tuple[int, int | None]] = []
    m = install(url, progress=lambda done, total: seen.append((done, total)))
    size = fcn_model.stat().st_size
    assert count_urlopen == [fcn_model.as_uri()]
    assert m.sha256 == digest and m.source == fcn_model.as_uri() and m.path.is_file()
    assert seen[-1] == (size, size)
    mtime = m.path.stat().st_mtime_ns
    again = install(url)
    assert again == m and len(count_urlopen) == 1, "an installed URL must not be downloaded again"
    assert m.path.stat().st_mtime_ns == mtime
    assert install(url, default=True).is_default and len(count_urlopen) == 1


def test_wrong_checksum_is_refused_and_leaves_no_file(fcn_model):
    wrong = "ab" * 32
    with pytest.raises(ChecksumError) as info:
        install(f"{fcn_model.as_uri()}#sha256={wrong}")
    assert wrong in str(info.value) and model_hash(fcn_model) in str(info.value)
    assert folder_contents() == [], "the download must be deleted"
    with pytest.raises(ConfigError, match="differs from the URL"):
        install(f"{fcn_model.as_uri()}#sha256={wrong}", sha256="cd" * 32)


def test_http_download(http_server, fcn_model, count_urlopen):
    url = f"{http_server}/{fcn_model.name}"
    seen: list[tuple[int, int | None]] = []
    m = install(url, name="web", sha256=model_hash(fcn_model), progress=lambda d, t: seen.append((d, t)))
    assert count_urlopen == [url]
    assert m.name == "web" and m.source == url and m.sha256 == model_hash(fcn_model) == model_hash(m.path)
    assert seen[-1] == (fcn_model.stat().st_size, fcn_model.stat().st_size)
    assert read_spec(m.path).arch == "fcn"
    with pytest.raises(GeosegIOError) as info:
        install(f"{http_server}/missing.pt")
    message = str(info.value)
    assert f"{http_server}/missing.pt" in message and "HTTP 404" in message and "\n" not in message
    assert [x.name for x in list_models()] == ["web"]


def test_unreachable_url_is_one_line_error():
    with pytest.raises(GeosegIOError, match=r"cannot download http://127\.0\.0\.1:9/m\.pt: .*refused"):
        install("http://127.0.0.1:9/m.pt")


# -- resolve_model ----------------------------------------------------------------------------------------------------


def test_resolve_path_name_env_and_default(fcn_model, monkeypatch):
    assert resolve_model(fcn_model) == fcn_model
    assert resolve_model(str(fcn_model)) == fcn_model
    m = install(fcn_model, name="mine")
    assert resolve_model("mine") == m.path
    monkeypatch.setenv("GEOSEG_MODEL", "mine")
    assert resolve_model(None) == m.path
    monkeypatch.setenv("GEOSEG_MODEL", str(fcn_model))
    assert resolve_model(None) == fcn_model
    monkeypatch.setenv("GEOSEG_MODEL", "nope")
    with pytest.raises(ModelNotFoundError, match=r"\$GEOSEG_MODEL=nope: no model file or installed model named nope"):
        resolve_model(None)
    monkeypatch.delenv("GEOSEG_MODEL")
    with pytest.raises(
        ModelNotFoundError, match=r"no default model set: .*geoseg model default NAME \(installed: mine\)"
    ):
        resolve_model(None)
    set_default("mine")
    assert resolve_model(None) == m.path


def test_resolve_unknown_names_the_installed_models(fcn_model, tmp_path):
    install(fcn_model, name="a")
    install(fcn_model, name="b")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("c")
    assert str(info.value) == "no model file or installed model named c; installed: a, b (geoseg model list)"
    with pytest.raises(ModelNotFoundError, match="model file not found"):
        resolve_model(tmp_path / "none.pt")


def test_resolve_without_any_model():
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(None)
    assert str(info.value) == (
        "no model given and no default model installed: train one (geoseg train), "
        "install one (geoseg model install CKPT --default), or run geoseg demo"
    )


def test_resolve_http_url_installs_once(http_server, fcn_model, count_urlopen):
    url = f"{http_server}/{fcn_model.name}"
    path = resolve_model(url)
    assert path == models_dir() / "fcn18.pt" and model_hash(path) == model_hash(fcn_model)
    assert resolve_model(url) == path and len(count_urlopen) == 1
    assert get("fcn18").source == url


# -- command line -----------------------------------------------------------------------------------------------------


def test_cli_install_list_default_remove(fcn_model):
    code, out = invoke("model", "list")
    assert code == 0 and out.strip() == "no models installed (geoseg model install CKPT)"
    code, out = invoke("model", "install", fcn_model, "--default")
    path = models_dir() / "fcn_resnet18.pt"
    assert code == 0, out
    assert out.strip() == f"installed fcn_resnet18 (fcn/resnet18, red,green,blue) -> {path} [default]"
    code, out = invoke("model", "install", fcn_model)
    assert code == 1 and "already installed; pass --overwrite" in out and "Traceback" not in out
    code, out = invoke("model", "install", fcn_model, "--name", "second")
    assert code == 0 and "[default]" not in out
    code, out = invoke("model", "list")
    assert code == 0 and "fcn_resnet18" in out and "second" in out and model_hash(fcn_model)[:12] in out
    code, out = invoke("model", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [(m["name"], m["is_default"]) for m in listed] == [("fcn_resnet18", True), ("second", False)]
    assert listed[0]["sha256"] == model_hash(fcn_model) and listed[0]["path"] == str(path)
    code, out = invoke("model", "default", "second")
    assert code == 0 and out.startswith("default model: second") and get("second").is_default
    code, out = invoke("model", "remove", "second")
    assert code == 0 and out.startswith("removed second") and [m.name for m in list_models()] == ["fcn_resnet18"]
    code, out = invoke("model", "remove", "second")
    assert (
        code == 1
        and out.strip() == "Error: no installed model named 'second'; installed: fcn_resnet18 (geoseg model list)"
    )


def test_cli_run_uses_the_default_model(tmp_path, fcn_model):
    scene = write_tif(tmp_path / "scene.tif", smooth_image(96, 96))
    code, out = invoke("model", "install", fcn_model, "--default", "--name", "house")
    assert code == 0, out
    opts = ["--tile", "64", "--overlap", "16", "--min-area", "0", "--simplify", "0", "-q"]
    code, out = invoke("run", scene, *opts, "-o", tmp_path / "out")
    assert code == 0, out
    assert (tmp_path / "out" / "scene.classes.tif").exists()
    report = json.loads((tmp_path / "out" / "scene.run.json").read_text())
    assert model_hash(get("house").path) in json.dumps(report), "the run must record the installed model"


def test_cli_run_without_any_model_is_a_one_line_error(tmp_path):
    scene = write_tif(tmp_path / "scene.tif", smooth_image(96, 96))
    code, out = invoke("run", scene, "-q", "-o", tmp_path / "out")
    assert code == 1, out
    assert "Traceback" not in out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: no model given and no default model installed: "), out
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_importing_the_library_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, geoseg.models; assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert models.MODEL_ENV == "GEOSEG_MODEL"
