"""The ``geoseg`` Processing provider: three algorithms and the setting that says where geoseg is."""

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import EXECUTABLE_SETTING, BatchAlgorithm, LandCoverAlgorithm, VectorizeAlgorithm, forget_models

ICON = os.path.join(os.path.dirname(__file__), "icon.svg")


class GeosegProvider(QgsProcessingProvider):
    def id(self):
        return "geoseg"

    def name(self):
        return "geoseg"

    def longName(self):
        return "geoseg land cover"

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):
        return ICON

    def load(self):
        try:  # the Options dialog's entry; qgis_process has no Options dialog but the same settings
            from processing.core.ProcessingConfig import ProcessingConfig, Setting

            ProcessingConfig.settingIcons[self.name()] = self.icon()
            ProcessingConfig.addSetting(
                Setting(
                    self.name(),
                    EXECUTABLE_SETTING,
                    "geoseg executable, its virtualenv folder or a Python with geoseg "
                    "(empty: $GEOSEG_EXECUTABLE, the geoseg that installed the plugin, or PATH)",
                    "",
                    valuetype=Setting.FILE,
                )
            )
            ProcessingConfig.readSettings()
        except ImportError:
            pass
        self.refreshAlgorithms()
        return True

    def unload(self):
        try:
            from processing.core.ProcessingConfig import ProcessingConfig

            ProcessingConfig.removeSetting(EXECUTABLE_SETTING)
        except (ImportError, KeyError):
            pass

    def loadAlgorithms(self):
        forget_models()
        for alg in (LandCoverAlgorithm(), VectorizeAlgorithm(), BatchAlgorithm()):
            self.addAlgorithm(alg)
