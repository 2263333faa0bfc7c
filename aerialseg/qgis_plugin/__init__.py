"""aerialseg's QGIS plugin: a Processing provider whose algorithms run the aerialseg command line.

QGIS loads this package with its own Python (the desktop and ``qgis_process`` alike), which
need not have aerialseg, torch, numpy or rasterio. So nothing here imports them: each
algorithm runs the ``aerialseg`` executable of the environment that installed the plugin
(``aerialseg qgis install`` records it in ``aerialseg.json``; the provider's setting overrides
it) as a subprocess, and reads its ``--progress json`` stream. Importing the package imports
nothing of QGIS either; :func:`classFactory`, which QGIS calls, does.
"""


def classFactory(iface):  # noqa: ANN001, ANN201, N802 (QGIS's name and signature)
    """The plugin object; ``iface`` is None under ``qgis_process``."""
    from .plugin import AerialsegPlugin

    return AerialsegPlugin(iface)
