"""Progress bars and the end-of-run summary (rich)."""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from ..pipeline import RunResult

_LABELS = {"segment": "segment  ", "vectorize": "vectorize", "export": "export   "}

#: Share of a scene's run each stage takes (segmentation dominates, ~95 % on CPU); the stages of one
#: run, in order, so that the fraction done only grows.
_STAGE_SHARES = {"segment": 0.8, "clean": 0.04, "vectorize": 0.13, "export": 0.03}

_events = logging.getLogger("geoseg.cli.events")


class JsonProgress:
    """Progress as JSON log records, for programs that drive geoseg (the QGIS plugin, schedulers).

    Each record carries ``event="progress"``, the ``stage`` with its ``done`` and
    ``total`` counts, and ``fraction``: the share of the whole command done, from
    0 to 1, never decreasing. A record is written once the fraction has grown by a
    whole percent or a second has passed, and always for a stage's first and last step.

    Parameters
    ----------
    scenes : int
        Scenes the command maps (a batch job's); the fraction spans them all.
    shares : dict, optional
        The command's stages in order, with the share of a scene's work each takes
        [default: a run's: segment, clean, vectorize, export].
    """

    def __init__(self, scenes: int = 1, shares: dict[str, float] | None = None) -> None:
        self.shares = shares or _STAGE_SHARES
        self.scenes = max(scenes, 1)
        self.scene = 0
        self.fraction = 0.0
        self._sent = (-1.0, 0.0)

    def update(self, stage: str, done: int, total: int) -> None:
        """A stage of the current scene has `done` of `total` steps finished."""
        before = 0.0
        for name, share in self.shares.items():
            if name == stage:
                break
            before += share
        within = before + self.shares.get(stage, 0.0) * (done / total if total else 1.0)
        self._emit(stage, done, total, (self.scene + within) / self.scenes)

    def next_scene(self, index: int, name: str) -> None:
        """Scene `index` (0-based) of a batch starts."""
        self.scene = index
        self._emit("scene", index, self.scenes, index / self.scenes, scene=name)

    def finish(self) -> None:
        """The command's work is done (said only where the last stage did not reach 1)."""
        if self.fraction < 1.0:
            self._emit("done", 1, 1, 1.0)

    def _emit(self, stage: str, done: int, total: int, fraction: float, **extra: Any) -> None:
        self.fraction = fraction = min(max(fraction, self.fraction), 1.0)
        last_fraction, last_time = self._sent
        now = time.monotonic()
        edge = done in (0, total) or stage == "scene"
        if not edge and fraction - last_fraction < 0.01 and now - last_time < 1.0:
            return
        self._sent = (fraction, now)
        _events.info(
            "%s %d/%d (%.0f %%)",
            stage,
            done,
            total,
            100 * fraction,
            extra={"event": "progress", "stage": stage, "done": done, "total": total, "fraction": round(fraction, 4)},
        )


def log_result(outputs: dict[str, Any], **fields: Any) -> None:
    """One ``event="result"`` record naming the files the command wrote (as strings) and a few figures."""
    paths = {k: str(v) for k, v in outputs.items() if v is not None}
    _events.info("outputs: %s", ", ".join(paths.values()), extra={"event": "result", "outputs": paths, **fields})


class _Bars:
    """Progress bars with ETA on stderr, one per stage; a failed run leaves only its error message."""

    def __init__(self, description: str, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn(description),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> Self:
        self.progress.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if et is not None:
            self.progress.live.transient = True
        self.progress.__exit__(et, ev, tb)

    def bar(self, stage: str, done: int, total: int, description: str | None = None) -> None:
        """Create or move the bar of `stage` (labelled `description`, default the stage's label)."""
        text = description or _LABELS.get(stage, stage)
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(text, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total, description=text)


class RunProgress(_Bars):
    """One bar per stage of a run: ``update(stage, completed, total)``."""

    def __init__(self, title: str) -> None:
        super().__init__(f"[bold]{title}[/] {{task.description}}")

    def update(self, stage: str, completed: int, total: int) -> None:
        self.bar(stage, completed, total)


def _area(m2: float) -> str:
    return f"{m2 / 1e6:,.3f} km²" if m2 >= 1e6 else f"{m2 / 1e4:,.2f} ha" if m2 >= 1e4 else f"{m2:,.1f} m²"


def area_table(class_areas: dict[str, float]) -> Table:
    """The "Land cover" table: area and share of each class."""
    total = sum(class_areas.values()) or 1.0
    table = Table(title="Land cover", show_edge=False)
    table.add_column("class")
    table.add_column("area", justify="right")
    table.add_column("share", justify="right")
    for name, area in class_areas.items():
        table.add_row(name, _area(area), f"{100 * area / total:.1f} %")
    return table


def print_summary(result: RunResult) -> None:
    """Area per class, polygon count, throughput and output paths."""
    console = Console(stderr=True)
    console.print(area_table(result.class_areas))
    t = result.timings.get("total", 0.0)
    console.print(
        f"{result.n_polygons:,} polygons · {result.scene_pixels / 1e6:.1f} Mpx in {t:.1f} s "
        f"({result.megapixels_per_second:.2f} Mpx/s)"
        + (f" · resumed {result.resumed_blocks} blocks" if result.resumed_blocks else "")
    )
    for key, path in result.outputs.items():
        console.print(f"  {key:<10} {path}")


class TrainProgress(_Bars):
    """A training bar (steps, with epoch and loss), a line per epoch, and plain bars for other stages."""

    def __init__(self, title: str, console: Console) -> None:
        super().__init__("[bold]{task.description}", console)
        self.title = title

    def update_stage(self, stage: str, done: int, total: int) -> None:
        """A plain bar for another stage (data, segment, vectorize, export, evaluate)."""
        self.bar(stage, done, total)

    def update(self, stage: str, done: int, total: int, info: dict[str, Any]) -> None:
        if stage == "epoch":
            score = f", validation mIoU {info['val_miou']:.4f}" if "val_miou" in info else ""
            best = " (best)" if info.get("best") else ""
            self.progress.console.print(
                f"epoch {done}/{total}: loss {info['loss']:.4f}{score}{best} [{info['seconds']:.0f} s]"
            )
            if "validate" in self.tasks:
                self.progress.remove_task(self.tasks.pop("validate"))
            return
        text = f"{self.title} epoch {info['epoch']} loss {info['loss']:.3f}" if stage == "train" else "validate"
        self.bar(stage, done, total, text)


class BatchProgress(_Bars):
    """A bar over the job's scenes (with ETA), the stage bars of scenes mapped here, and a line per finished scene."""

    def __init__(self, region: str) -> None:
        super().__init__("[bold]{task.description}")
        self.region = region

    def update(self, event: str, info: dict[str, Any]) -> None:
        if event == "scene":
            for stage in [s for s in self.tasks if s != "scenes"]:
                self.progress.remove_task(self.tasks.pop(stage))
            self.bar("scenes", info.get("done", info["index"]), info["total"], f"{self.region} ({info['name']})")
        elif event == "stage":
            self.bar(info["stage"], info["done"], info["total"], f"  {_LABELS.get(info['stage'], info['stage'])}")
        elif event == "outcome":
            o = info["outcome"]
            style = {"done": "green", "skipped": "dim", "failed": "red"}.get(o.status, "yellow")
            detail = f": {o.error}" if o.error else f" in {o.seconds:.1f} s" if o.status == "done" else ""
            self.progress.console.print(f"[{style}]{o.scene}: {o.status}{detail}[/]", highlight=False)
            self.bar("scenes", info.get("done", info["index"] + 1), info["total"], self.region)
        elif event == "merge":
            self.bar("merge", info["done"], 1, f"  merge {info['scenes']} scenes")


def print_batch_summary(result: Any, *, dry_run: bool = False) -> None:
    """A row per scene (status, time, km² per class) and the totals."""
    console = Console(stderr=True)
    names: list[str] = list(dict.fromkeys(n for o in result.scenes for n in o.class_areas_m2))
    table = Table(title=f"{result.region}: {'plan' if dry_run else 'scenes'}", show_edge=False)
    for col, justify in [("scene", "left"), ("status", "left"), ("time", "right")]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for n in names:
        table.add_column(f"{n}\nkm²", justify="right")
    totals = dict.fromkeys(names, 0.0)
    for o in result.scenes:
        row = [o.scene, o.status, f"{o.seconds:.1f} s"]
        for n in names:
            a = o.class_areas_m2.get(n)
            row.append("" if a is None else f"{a / 1e6:.4f}")
            totals[n] += a or 0.0
        table.add_row(*row)
    table.add_row("total", "", f"{result.seconds:.1f} s", *(f"{totals[n] / 1e6:.4f}" for n in names), style="bold")
    console.print(table)
    for o in result.scenes:
        if o.error:
            console.print(f"[red]{o.scene}[/]: {o.error}", highlight=False)
    if result.regional is not None:
        console.print(f"regional layer: {result.regional} ({result.regional_features:,} polygons)")
    console.print(f"manifest: {result.manifest}" if not dry_run else "dry run: nothing was written")
