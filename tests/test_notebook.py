"""The quickstart notebook runs from top to bottom and produces the maps, tables and files it promises."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from geoseg.classes import ISPRS

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"

#: Quick mode runs in about 50-65 s on 2 idle CPU cores (kernel start, scene, a 30-second training, run, plots);
#: the bound leaves room for a busy machine and still catches the full-size path (over 3 minutes) running instead.
BUDGET_S = 150.0


def _cell(nb: Any, tag: str) -> Any:
    tagged = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged {tag!r}, found {len(tagged)}"
    return tagged[0]


def _images(cell: Any) -> int:
    return sum(1 for o in cell.outputs if o.output_type == "display_data" and "image/png" in o.get("data", {}))


def _text(cell: Any) -> str:
    parts = []
    for o in cell.outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type in ("display_data", "execute_result"):
            parts.append(o.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_notebook_is_saved_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(not c.outputs and c.execution_count is None for c in code)


@pytest.fixture
def executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Path, Path, float]:
    """The notebook executed in a fresh folder, in quick mode, with an empty model library."""
    home = tmp_path / "geoseg-home"
    work = tmp_path / "work"
    work.mkdir()
    # The kernel inherits the environment: no installed model, no GEOSEG_MODEL, so the notebook trains its own.
    monkeypatch.setenv("GEOSEG_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("GEOSEG_HOME", str(home))
    monkeypatch.delenv("GEOSEG_MODEL", raising=False)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Last cell, added to this in-memory copy only: which interpreter ran the kernel.
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)", id="which-python"))
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(work)}}, allow_errors=False
    )
    t0 = time.perf_counter()
    client.execute()
    return nb, work, home, time.perf_counter() - t0


def test_quickstart_notebook_runs(executed: tuple[Any, Path, Path, float]) -> None:
    nb, work, home, seconds = executed

    # No cell failed (allow_errors=False raises on the first error; check anyway) and the kernel was this venv's Python.
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert Path(_text(nb.cells[-1]).strip()).resolve() == Path(sys.executable).resolve()
    assert "Quick mode: True" in "".join(_text(c) for c in nb.cells if c.cell_type == "code")

    # Everything was written under the working folder; nothing went into the model library.
    out = work / "geoseg-quickstart"
    mapped = out / "map"
    for name in ("scene.classes.tif", "scene.landcover.gpkg", "scene.run.json", "scene.preview.png", "confusion.png"):
        assert (mapped / name).is_file(), f"{name} missing from {sorted(p.name for p in mapped.iterdir())}"
    assert (out / "scene.tif").is_file() and (out / "scene.truth.tif").is_file()
    assert (out / "quickstart-model.pt").is_file(), "the notebook should have trained its own model"
    assert not home.exists(), "the notebook must not install anything into the model library"
    report = json.loads((mapped / "scene.run.json").read_text())
    assert report["model"]["name"] == "quickstart"
    assert Path(report["scene"]["path"]).resolve() == (out / "scene.tif").resolve()

    # The map cells drew figures; the area table names every class; the accuracy check ran.
    assert _images(_cell(nb, "class-map")) >= 1
    assert _images(_cell(nb, "polygon-map")) >= 1
    areas = _text(_cell(nb, "area-table"))
    assert all(name in areas for name in ISPRS.names), areas
    assert "polygons" in areas and "share" in areas
    accuracy = _cell(nb, "accuracy")
    assert "Overall accuracy" in _text(accuracy)
    assert _images(accuracy) >= 1

    print(f"quickstart notebook executed in {seconds:.1f} s")
    assert seconds < BUDGET_S, f"the quickstart notebook took {seconds:.0f} s in quick mode (budget {BUDGET_S:.0f} s)"
