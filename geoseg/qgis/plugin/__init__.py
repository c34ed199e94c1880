"""The geoseg QGIS plugin: a Processing provider whose algorithms run the ``geoseg`` command.

Installed as the folder ``geoseg_processing`` in a QGIS profile's ``python/plugins``
(``geoseg qgis install``, or the ZIP from ``geoseg qgis zip``). It imports nothing
of geoseg: the algorithms run geoseg as a separate process (see ``runner``).
"""


def classFactory(iface):
    """QGIS's entry point: the plugin object (it registers the provider in ``initProcessing``)."""
    from .plugin import GeosegPlugin

    return GeosegPlugin(iface)
