"""Write the outputs of a run: class COG (+ sidecars), GeoPackage, preview, run report.

Every file is written under a hidden temporary name in its final folder and
renamed into place only when complete (:func:`geoseg._files.staged`), so an
output path holds either the previous file, nothing, or the complete new
file.
"""

from .cog import class_sidecars, write_class_cog
from .gpkg import GeoPackageWriter, embed_qgis_style
from .preview import write_preview

__all__ = ["GeoPackageWriter", "class_sidecars", "embed_qgis_style", "write_class_cog", "write_preview"]
