"""The plugin object QGIS holds: it registers the provider once, desktop or ``qgis_process``."""

from __future__ import annotations

from typing import Any


class AerialsegPlugin:
    """Adds the ``aerialseg`` provider to the Processing registry and removes it on unload.

    QGIS calls :meth:`initProcessing` for a plugin with ``hasProcessingProvider=yes`` (also
    under ``qgis_process``, where ``iface`` is None) and, on the desktop, :meth:`initGui`
    too: the provider is added only once.
    """

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: Any = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS's name)
        """Register the provider."""
        from qgis.core import QgsApplication

        from .provider import AerialsegProvider

        if self.provider is None:
            self.provider = AerialsegProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 (QGIS's name)
        """The desktop's start: the algorithms live in the Processing toolbox, no menus of their own."""
        self.initProcessing()

    def unload(self) -> None:
        """Remove the provider (plugin disabled or reloaded)."""
        from qgis.core import QgsApplication

        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
