"""Vector outputs, streamed: features are appended in batches, never all held in memory.

Features always go first into a GeoPackage (one layer per class, appended batch by batch).
A ``.gpkg`` output is that file; GeoParquet, FlatGeobuf and GeoJSON outputs are single
layers (a ``class`` column tells the classes apart) converted from it record batch by
record batch, because FlatGeobuf cannot be appended to and GDAL here has no Parquet
driver. Writing happens in a temporary file renamed by the caller. A GeoPackage gets each
layer's default QGIS style in its ``layer_styles`` table (:func:`~aerialseg.styles.write_layer_styles`);
the single-layer formats cannot hold one, so the caller writes a QML file beside them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AerialsegError
from ..styles import write_layer_styles

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["VectorWriter", "FORMATS", "format_for"]

FORMATS = {
    ".gpkg": "GPKG",
    ".parquet": "Parquet",
    ".geoparquet": "Parquet",
    ".fgb": "FlatGeobuf",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
}
_BATCH = 2000


def format_for(path: Path) -> str:
    """The output format named by the file's extension."""
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise AerialsegError(
            f"unknown vector format {path.suffix!r}",
            path=path,
            hint=f"use one of {', '.join(sorted(FORMATS))}",
        ) from None


class VectorWriter:
    """Collect feature rows per layer and append them to ``path`` in batches.

    ``name`` is the layer name of single-layer formats (FlatGeobuf, GeoJSON): the final
    file's stem, since ``path`` is usually a temporary name that would otherwise end up inside.
    ``styles`` (layer name -> QML) become the layers' default styles in a GeoPackage.
    """

    def __init__(
        self,
        path: Path,
        crs: Any,
        metadata: dict[str, str],
        work_gpkg: Path | None = None,
        name: str | None = None,
        styles: Mapping[str, str] | None = None,
    ):
        self.path = path
        self.styles = dict(styles or {})
        self.name = name or path.stem
        self.format = format_for(path)
        self.crs = crs.to_wkt() if crs is not None else None
        self.metadata = metadata
        self.gpkg = path if self.format == "GPKG" else (work_gpkg or path.with_suffix(".work.gpkg"))
        self.pending: dict[str, list[dict]] = {}
        self.columns: dict[str, dict[str, str]] = {}
        self.layers: list[str] = []
        self.count = 0

    def declare(self, layer: str, columns: dict[str, str]) -> None:
        """Make sure ``layer`` exists in the output with these columns (name -> numpy dtype), even if empty."""
        self.pending.setdefault(layer, [])
        self.columns[layer] = columns

    def add(self, layer: str, row: dict) -> None:
        """One feature: attribute columns plus ``geometry`` (shapely, in the output CRS)."""
        rows = self.pending.setdefault(layer, [])
        rows.append(row)
        self.count += 1
        if len(rows) >= _BATCH:
            self._flush(layer)

    def _flush(self, layer: str) -> None:
        import geopandas as gpd
        import pandas as pd
        import pyogrio

        rows = self.pending.get(layer, [])
        if not rows and layer in self.layers:
            return
        if rows:
            frame = gpd.GeoDataFrame(rows, geometry="geometry", crs=self.crs)
        else:
            data = {name: pd.Series([], dtype=dtype) for name, dtype in self.columns.get(layer, {}).items()}
            frame = gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=self.crs), crs=self.crs)
        pyogrio.write_dataframe(
            frame,
            self.gpkg,
            layer=layer,
            driver="GPKG",
            append=layer in self.layers,
            geometry_type="Polygon",
            dataset_metadata=self.metadata if not self.layers else None,
            layer_metadata=self.metadata if layer not in self.layers else None,
        )
        if layer not in self.layers:
            self.layers.append(layer)
        self.pending[layer] = []

    def close(self) -> None:
        """Flush everything; convert to the output format when it is not GeoPackage."""
        for layer in list(self.pending):
            self._flush(layer)
        if self.format == "GPKG":
            if self.styles:
                write_layer_styles(
                    self.gpkg, {layer: self.styles[layer] for layer in self.layers if layer in self.styles}
                )
            return
        try:
            self._convert()
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the work GeoPackage and GDAL's side files (after conversion, failure or interruption)."""
        if self.format != "GPKG":
            self.gpkg.unlink(missing_ok=True)
        Path(f"{self.gpkg}.aux.xml").unlink(missing_ok=True)

    def _batches(self) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """Record batches of every layer in one schema: columns missing in a layer are null, geometry last."""
        import pyarrow as pa
        import pyogrio

        def layers() -> Iterator[tuple[str, pa.RecordBatchReader]]:
            for layer in self.layers:
                with pyogrio.open_arrow(self.gpkg, layer=layer, batch_size=8192, use_pyarrow=True) as (meta, reader):
                    yield meta["geometry_name"] or "wkb_geometry", reader

        fields: dict[str, pa.Field] = {}
        for geometry_name, reader in layers():
            for f in reader.schema:
                if f.name == geometry_name:
                    fields["geometry"] = f.with_name("geometry")
                elif f.name not in fields or pa.types.is_null(fields[f.name].type):
                    fields[f.name] = f
        schema = pa.schema([f for name, f in fields.items() if name != "geometry"] + [fields["geometry"]])

        def generate() -> Iterator[pa.RecordBatch]:
            for geometry_name, reader in layers():
                for batch in reader:
                    names = {("geometry" if n == geometry_name else n): n for n in batch.schema.names}
                    columns = [
                        batch.column(names[f.name]).cast(f.type)
                        if f.name in names
                        else pa.nulls(batch.num_rows, f.type)
                        for f in schema
                    ]
                    yield pa.RecordBatch.from_arrays(columns, schema=schema)

        return schema, generate()

    def _convert(self) -> None:
        import pyarrow as pa

        schema, batches = self._batches()
        if self.format == "Parquet":
            self._write_parquet(schema, batches)
            return
        import pyogrio

        reader = pa.RecordBatchReader.from_batches(schema, batches)
        pyogrio.write_arrow(
            reader,
            self.path,
            driver=self.format,
            layer=self.name,
            geometry_name="geometry",
            geometry_type="Polygon",
            crs=self.crs,
            layer_metadata=self.metadata if self.format == "FlatGeobuf" else None,
        )

    def _write_parquet(self, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> None:
        import pyarrow.parquet as pq
        from pyproj import CRS

        geometry = "geometry"
        geo = {
            "version": "1.1.0",
            "primary_column": geometry,
            "columns": {
                geometry: {
                    "encoding": "WKB",
                    "geometry_types": ["Polygon"],
                    **({"crs": CRS.from_wkt(self.crs).to_json_dict()} if self.crs else {}),
                }
            },
        }
        meta = {b"geo": json.dumps(geo).encode(), b"aerialseg": json.dumps(self.metadata).encode()}
        schema = schema.with_metadata(meta)
        with pq.ParquetWriter(self.path, schema, compression="zstd") as writer:
            for batch in batches:
                writer.write_batch(batch.replace_schema_metadata(meta))
