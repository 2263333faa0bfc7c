"""The ``aerialseg`` Processing provider: its algorithms, its one setting (the executable), its formats."""

from __future__ import annotations

from pathlib import Path

from processing.core.ProcessingConfig import ProcessingConfig, Setting
from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import ALGORITHMS
from .config import EXECUTABLE_SETTING, PluginConfig

_HERE = Path(__file__).resolve().parent


class AerialsegProvider(QgsProcessingProvider):
    """Predict, vectorize and doctor, run by the aerialseg of the environment that installed the plugin."""

    def __init__(self) -> None:
        super().__init__()
        self.config = PluginConfig.read(_HERE)

    def id(self) -> str:
        """The prefix of the algorithms' ids (``aerialseg:predict``)."""
        return "aerialseg"

    def name(self) -> str:
        """The toolbox's group."""
        return "aerialseg"

    def longName(self) -> str:  # noqa: N802 (QGIS's name)
        """The name with the version of aerialseg the plugin came with."""
        return f"aerialseg {self.config.version}"

    def icon(self) -> QIcon:
        """The toolbox's icon."""
        return QIcon(self.svgIconPath())

    def svgIconPath(self) -> str:  # noqa: N802 (QGIS's name)
        """The icon file."""
        return str(_HERE / "icon.svg")

    def load(self) -> bool:
        """Declare the executable setting (as QGIS's GRASS and SAGA providers declare theirs), then the algorithms."""
        ProcessingConfig.settingIcons[self.name()] = self.icon()
        ProcessingConfig.addSetting(
            Setting(
                self.name(),
                EXECUTABLE_SETTING,
                "aerialseg executable (blank: the one 'aerialseg qgis install' recorded, else aerialseg on PATH)",
                "",
                valuetype=Setting.FILE,
            )
        )
        ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        """Withdraw the setting."""
        ProcessingConfig.removeSetting(EXECUTABLE_SETTING)

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS's name)
        """One instance of each algorithm."""
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm(self.config))

    def supportedOutputRasterLayerExtensions(self) -> list[str]:  # noqa: N802 (QGIS's name)
        """GeoTIFF: what aerialseg writes class rasters as."""
        return ["tif"]

    def supportedOutputVectorLayerExtensions(self) -> list[str]:  # noqa: N802 (QGIS's name)
        """The object formats QGIS's GDAL reads back (Parquet only where GDAL has Arrow: not offered)."""
        return ["gpkg", "fgb", "geojson"]

    def defaultVectorFileExtension(self, hasGeometry: bool = True) -> str:  # noqa: N802, N803 (QGIS's names)
        """A GeoPackage: a layer per class, each with its style inside."""
        return "gpkg"

    def defaultRasterFileExtension(self) -> str:  # noqa: N802 (QGIS's name)
        """GeoTIFF."""
        return "tif"
