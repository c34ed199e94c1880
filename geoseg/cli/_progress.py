"""Progress bars and the end-of-run summary (rich)."""

from __future__ import annotations

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


def print_summary(result: RunResult) -> None:
    """Area per class, polygon count, throughput and output paths."""
    console = Console(stderr=True)
    total = sum(result.class_areas.values()) or 1.0
    table = Table(title="Land cover", show_edge=False)
    table.add_column("class")
    table.add_column("area", justify="right")
    table.add_column("share", justify="right")
    for name, area in result.class_areas.items():
        table.add_row(name, _area(area), f"{100 * area / total:.1f} %")
    console.print(table)
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
