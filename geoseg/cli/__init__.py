"""The ``geoseg`` command line: parses options, calls the library, shows progress.

Each subcommand lives in its own module and imports heavy libraries only when
it runs, so ``geoseg --help`` stays fast and never imports torch.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

import click

from .. import __version__
from ..errors import GeosegError, LockedError

__all__ = ["EXIT_LOCKED", "main"]

#: Exit status when another geoseg process holds the lock on the same outputs (EX_TEMPFAIL: try again later).
EXIT_LOCKED = 75


class _Group(click.Group):
    """Turns library errors into one-line messages and exit code 1 (2 stays click's usage errors)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GeosegError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(EXIT_LOCKED if isinstance(exc, LockedError) else 1)
        except KeyboardInterrupt:
            click.echo("Interrupted; run the same command again to resume from the finished blocks.", err=True)
            ctx.exit(130)


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("geoseg")
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library warnings (numpy's "invalid value encountered", GDAL's through rasterio) become one
    # log line each, without the source line Python prints under them.
    warnings.formatwarning = _one_line_warning
    logging.captureWarnings(True)
    py_warnings = logging.getLogger("py.warnings")
    py_warnings.handlers[:] = [handler]
    py_warnings.propagate = False


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    return f"{category.__name__}: {message}"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geoseg")
@click.option("-v", "--verbose", count=True, help="More log messages (-vv for debug).")
def main(verbose: int) -> None:
    """Land-cover maps from GeoTIFFs: segment, stitch, vectorise.

    \b
    geoseg run scene.tif --model model.pt      scene -> classes COG + land-cover GeoPackage
    geoseg batch workflows/region.yaml         many scenes -> one regional layer (resumable)
    geoseg info scene.tif|model.pt             what a scene or a model holds
    geoseg vectorize scene.classes.tif         class raster -> land-cover GeoPackage
    geoseg model init -o model.pt              a new (untrained) model checkpoint
    geoseg qgis install                        the QGIS Processing plugin
    """
    _setup_logging(verbose)


from . import batch as _batch  # noqa: E402
from . import demo as _demo  # noqa: E402
from . import evaluate as _evaluate  # noqa: E402
from . import info as _info  # noqa: E402
from . import model as _model  # noqa: E402
from . import qgis as _qgis  # noqa: E402
from . import run as _run  # noqa: E402
from . import train as _train  # noqa: E402
from . import vectorize as _vectorize  # noqa: E402

main.add_command(_run.run)
main.add_command(_info.info)
main.add_command(_model.model)
main.add_command(_vectorize.vectorize)
main.add_command(_train.train)
main.add_command(_evaluate.evaluate)
main.add_command(_demo.demo)
main.add_command(_batch.batch)
main.add_command(_qgis.qgis)
