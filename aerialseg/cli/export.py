"""``aerialseg export``: weights to one ONNX file, written only if ONNX Runtime agrees with PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..conventions import ONNX_OPSET, OutputKind
from . import console
from .options import JsonOutput, Overwrite, chosen_model


def export_command(
    weights: Annotated[str, typer.Argument(help="Weights file or name (see 'aerialseg models').")],
    output: Annotated[Path, typer.Option("-o", "--output", help="ONNX file to write.")],
    opset: Annotated[int, typer.Option(help=f"ONNX opset; {ONNX_OPSET}+ uses the dynamo exporter.")] = ONNX_OPSET,
    fp16: Annotated[bool, typer.Option("--fp16", help="Half-precision weights and compute (GPU).")] = False,
    output_kind: Annotated[
        OutputKind, typer.Option("--output-kind", help="probabilities (what QGIS Deepness and GeoDeep read) or logits.")
    ] = "probabilities",
    static_size: Annotated[
        int | None,
        typer.Option("--static-size", help="Fix height and width to this many pixels (Deepness and GeoDeep read it)."),
    ] = None,
    parity_image: Annotated[
        Path | None, typer.Option("--parity-image", help="Raster to check parity on (default: bundled NEON crop).")
    ] = None,
    max_abs_diff: Annotated[float | None, typer.Option(help="Largest allowed |ONNX - PyTorch|.")] = None,
    min_agreement: Annotated[float | None, typer.Option(help="Smallest allowed argmax agreement (0-1).")] = None,
    overwrite: Overwrite = False,
    json_output: JsonOutput = False,
) -> None:
    """Export to ONNX with the model card in metadata_props; refuses to write if parity fails."""
    from ..export import export_onnx

    weights = chosen_model(weights, announce=not json_output)
    result = export_onnx(
        weights,
        output,
        opset=opset,
        fp16=fp16,
        output=output_kind,
        static_size=static_size,
        parity_image=parity_image,
        max_abs_diff=max_abs_diff,
        min_agreement=min_agreement,
        overwrite=overwrite,
    )
    if json_output:
        console.print_json(
            {
                "path": str(result.path),
                "opset": result.opset,
                "exporter": result.exporter,
                "output": result.output,
                "fp16": result.fp16,
                "size_bytes": result.size_bytes,
                "max_abs_diff": result.max_abs_diff,
                "agreement": result.agreement,
                "checks": [c.__dict__ for c in result.checks],
            }
        )
        return
    console.table(
        f"ONNX Runtime vs PyTorch ({result.output})",
        ["Input (B, C, H, W)", "max |difference|", "argmax agreement"],
        [(c.shape, f"{c.max_abs_diff:.3g}", f"{c.agreement:.4%}") for c in result.checks],
        right=["max |difference|", "argmax agreement"],
    )
    console.out.print(
        f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB, opset {result.opset}, {result.exporter} exporter, "
        f"limits |diff| <= {result.max_abs_diff_limit:g}, agreement >= {result.min_agreement:.2%})"
    )
