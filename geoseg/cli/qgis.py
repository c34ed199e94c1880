"""``geoseg qgis``: put the QGIS Processing plugin into a QGIS profile, or into a ZIP."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def qgis() -> None:
    """The QGIS plugin: geoseg's algorithms in QGIS's Processing toolbox and qgis_process."""


@qgis.command("install")
@click.option("--profile", default="default", show_default=True, help="QGIS user profile to install into.")
@click.option(
    "--profiles-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding QGIS's profiles [default: QGIS 3's folder for this user].",
)
def install(profile: str, profiles_dir: Path | None) -> None:
    """Install the plugin into a QGIS profile (enabled; restart QGIS to load it).

    The plugin runs this geoseg (recorded at install) unless its setting or
    $GEOSEG_EXECUTABLE names another.
    """
    from ..qgis import geoseg_command, install_plugin

    target = install_plugin(profile, root=profiles_dir)
    click.echo(f"installed the geoseg QGIS plugin -> {target}")
    click.echo(f"it runs {geoseg_command()}; restart QGIS, then find geoseg in the Processing toolbox")


@qgis.command("zip")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("geoseg_processing.zip"),
    show_default=True,
    help="ZIP file to write.",
)
def zip_(output: Path) -> None:
    """Write the plugin as a ZIP for QGIS's Plugins > Manage and Install Plugins > Install from ZIP."""
    from ..qgis import zip_plugin

    path = zip_plugin(output)
    click.echo(f"wrote {path}; in QGIS: Plugins > Manage and Install Plugins > Install from ZIP")
