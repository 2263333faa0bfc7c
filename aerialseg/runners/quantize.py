"""int8 through ONNX Runtime: static QDQ quantization calibrated on real tiles, cached.

The float32 export is quantized with per-channel int8 weights and uint8 activations whose
ranges come from running the network on calibration tiles (the input raster's own, or a
raster named by ``--calibration``). Only convolutions are quantized: they are nearly all
the work, and leaving the attention products and the softmax in float32 kept argmax
agreement with fp32 at 99.6 % on the sample weights where quantizing every operator gave
99.0 % for a few per cent more speed. The result is cached in the export cache folder, keyed
by the float32 graph's bytes, the calibration pixels themselves (so the same raster reuses it)
and the package versions, verified before each use as the exports are
(:func:`~.onnx_runner.cache_entry_intact`), and carries the export's metadata with its
precision property set to ``int8``.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np

from ..atomic import atomic_output
from ..card import card_from_metadata, onnx_graph
from ..conventions import PRECISION_KEY
from ..errors import AerialsegError
from ..onnxrt import import_onnxruntime
from .onnx_runner import (
    CACHE_KEY,
    CacheEntry,
    OnnxRunner,
    cache_entry_intact,
    cache_key,
    file_sha256,
    make_cache_dir,
    onnx_cache_dir,
    seal_cache_entry,
)

__all__ = ["cached_int8", "int8_cache_entry", "QUANTIZED_OPS"]

QUANTIZED_OPS = ("Conv", "ConvTranspose")


def int8_cache_entry(fp32_path: Path, tiles: list[np.ndarray]) -> CacheEntry:
    """The cache entry of the int8 model of ``fp32_path`` calibrated on ``tiles``."""
    metadata, shapes = onnx_graph(fp32_path)
    calibration = hashlib.sha256()
    for tile in tiles:
        calibration.update(str(tile.shape).encode())
        calibration.update(np.ascontiguousarray(tile, dtype=np.float32).tobytes())
    key = cache_key(
        kind="int8",
        graph_sha256=file_sha256(fp32_path),
        calibration_sha256=calibration.hexdigest(),
        quantized_ops=QUANTIZED_OPS,
        onnxruntime=import_onnxruntime().__version__,
    )
    path = onnx_cache_dir() / f"{fp32_path.stem}-int8-{key[:24]}.onnx"
    return CacheEntry(path, key, card_from_metadata(metadata, shapes, fp32_path))


def cached_int8(fp32_path: Path, tiles: list[np.ndarray]) -> Path:
    """The int8 model of ``fp32_path`` calibrated on ``tiles`` (``(bands, h, w)`` in [0, 1]), made once."""
    if not tiles:
        raise AerialsegError("int8 calibration needs at least one tile with data", hint="name a --calibration raster")
    entry = int8_cache_entry(fp32_path, tiles)
    if not cache_entry_intact(entry):
        make_cache_dir(entry.path.parent)
        fp32 = OnnxRunner(fp32_path, "cpu")  # calibration feeds the graph what inference feeds it
        feeds = [feed for tile in tiles for feed in fp32.feeds(tile[None])]
        with atomic_output(entry.path, overwrite=True) as tmp:
            _quantize(fp32_path, feeds, Path(tmp), entry.key)
        seal_cache_entry(entry.path)
    return entry.path


def _quantize(fp32_path: Path, feeds: list[np.ndarray], dest: Path, key: str) -> None:
    import onnx

    import_onnxruntime()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = onnx.load(str(fp32_path), load_external_data=False)
    weights = {tensor.name for tensor in source.graph.initializer}
    name = next(value.name for value in source.graph.input if value.name not in weights)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            feed = next(self._feeds, None)
            return None if feed is None else {name: feed}

    with tempfile.TemporaryDirectory(prefix="aerialseg-int8-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(dest),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(QUANTIZED_OPS),
        )
    graph = onnx.load(str(dest))
    del graph.metadata_props[:]
    metadata = {prop.key: prop.value for prop in source.metadata_props} | {PRECISION_KEY: "int8", CACHE_KEY: key}
    for name, value in metadata.items():
        graph.metadata_props.add(key=name, value=value)
    onnx.save(graph, str(dest))
