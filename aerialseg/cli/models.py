"""``aerialseg models``: the registered networks, the weights installed locally and the prepared datasets.

A weights file that cannot be used is listed with its reason rather than stopping the listing;
file names are escaped, since any name can sit in a weights folder.
"""

from __future__ import annotations

from . import console
from .options import JsonOutput


def models_command(json_output: JsonOutput = False) -> None:
    """List architectures, the weights found by name (with their score) and the datasets prepared by name."""
    from ..card import printable
    from ..catalog import is_sample, score_of
    from ..data.store import data_home, list_prepared
    from ..models import ARCHITECTURES, MODELS
    from ..weights import scan_weights, weights_dirs

    weights, broken = scan_weights()
    datasets = list_prepared()
    if json_output:
        console.print_json(
            {
                "architectures": [
                    {
                        "name": s.name,
                        "arch": s.arch,
                        "backbone": s.backbone,
                        "default": ARCHITECTURES[s.arch][2] == s.backbone,
                        "params_6_classes": s.params(6),
                        "inference_params_6_classes": s.inference_params(6),
                        "gmacs_512": s.gmacs_512,
                    }
                    for s in MODELS
                ],
                "weights": [{"name": w.name, "path": str(w.path), "card": w.card.to_dict()} for w in weights],
                "broken_weights": [{"name": b.name, "path": str(b.path), "problem": b.reason} for b in broken],
                "data_folder": str(data_home()),
                "datasets": [
                    {
                        "name": d.name,
                        "path": str(d.folder),
                        "dataset": d.manifest.dataset if d.manifest else None,
                        "splits": {s.name: len(s.patches) for s in d.manifest.splits.values()} if d.manifest else {},
                        "problem": d.problem,
                    }
                    for d in datasets
                ],
            }
        )
        return
    rows = [
        (
            s.title,
            s.arch,
            s.backbone + (" (default)" if ARCHITECTURES[s.arch][2] == s.backbone else ""),
            f"{s.params(6):,}",
            f"{s.inference_params(6):,}",
            f"{s.gmacs_512:.1f}",
        )
        for s in MODELS
    ]
    console.table(
        "Architectures (parameters for 6 classes)",
        ["Network", "--arch", "--backbone", "Parameters", "Eval-path parameters", "GMAC per 512² tile"],
        rows,
        right=["Parameters", "Eval-path parameters", "GMAC per 512² tile"],
    )
    if weights:
        console.table(
            "Weights available by name",
            ["Name", "Network", "Classes", "Bands", "GSD (m)", "Trained on", "Score", "File"],
            [
                (
                    printable(w.name),
                    w.card.network,
                    _classes(w.card.class_names),
                    "-".join(w.card.bands),
                    w.card.gsd_m,
                    f"{w.card.dataset or 'not stated'}{' (sample)' if is_sample(w.card.training) else ''}",
                    f"{score[0]} {score[1]:.1f}" if (score := score_of(w.card.metrics, w.card.dataset)) else "-",
                    printable(str(w.path)),
                )
                for w in weights
            ],
        )
    if broken:
        console.table(
            "Weights files that cannot be used",
            ["Name", "Problem", "File"],
            [(printable(b.name), b.reason, printable(str(b.path))) for b in broken],
        )
    if not weights:
        searched = ", ".join(printable(str(d)) for d in weights_dirs())
        console.out.print(f"No usable weights installed. Searched: {searched}")
    if datasets:
        console.table(
            f"Prepared datasets (--dataset NAME), in {printable(str(data_home()))}",
            ["Name", "Dataset", "Patches per split", "Problem"],
            [
                (
                    printable(d.name),
                    d.manifest.dataset if d.manifest else "",
                    ", ".join(f"{s.name} {len(s.patches)}" for s in d.manifest.splits.values()) if d.manifest else "",
                    d.problem or "",
                )
                for d in datasets
            ],
        )
    else:
        console.out.print(f"No datasets prepared by name in {printable(str(data_home()))} ('aerialseg prepare').")


def _classes(names: list[str], shown: int = 4) -> str:
    """``6: impervious_surfaces, building, ... (2 more)``: the count and the first names, escaped."""
    from ..card import printable

    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return f"{len(names)}: " + ", ".join(printable(n) for n in names[:shown]) + more
