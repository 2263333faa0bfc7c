"""Which installed weights a model name means: ``manet``, ``manet-potsdam``, ``abcnet-uavid``, ``maresunet-r18``.

Users name what they want (an architecture, maybe a backbone and a dataset), not a file. A
name that is no weights file's own name is read as such a query: each part, split at ``-``
or ``_``, is an architecture, a backbone (``resnet50`` or ``r50``) or a dataset, exactly or
by a prefix that fits one word only. Among the weights on the search path whose card agrees,
trained weights come before sample weights, then the higher recorded score (the held-out test
score when the card has one, else the validation score: mean F1 on ISPRS-style data, mIoU on
UAVid), then weights with no score; ties go to the first name in order. The choice is a
:class:`WeightsChoice` that says what was picked and why, for the command line to print and
the outputs' tags to record. Everything here reads cards only: no torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .card import printable
from .conventions import SAMPLE_WEIGHTS_MARK
from .data.classes import DATASETS
from .errors import UnknownModelError
from .models import ARCHITECTURES, MODELS

if TYPE_CHECKING:
    from .weights import WeightsEntry

__all__ = ["ModelQuery", "WeightsChoice", "parse_query", "choose", "score_of", "how_to_get"]

_SCORE_SECTIONS = (("held_out_test", "held-out test"), ("test", "test"), ("validation", "validation"))


@dataclass(frozen=True)
class ModelQuery:
    """What a model name asks for; None: any."""

    text: str
    arch: str | None = None
    backbone: str | None = None
    dataset: str | None = None

    def matches(self, entry: WeightsEntry) -> bool:
        """Whether the weights' card is of this architecture, backbone and dataset."""
        card = entry.card
        return (
            (self.arch is None or card.arch == self.arch)
            and (self.backbone is None or card.backbone == self.backbone)
            and (self.dataset is None or (card.dataset or "").lower() == self.dataset)
        )

    def how_to_get(self) -> str:
        """The three ways to weights of this kind, for every message that finds none."""
        return how_to_get(self.arch, self.dataset)

    def describe(self) -> str:
        """``manet on potsdam`` and the like."""
        parts = [self.arch or "any network"]
        if self.backbone:
            parts.append(f"({self.backbone})")
        if self.dataset:
            parts.append(f"on {self.dataset}")
        return " ".join(parts)


@dataclass(frozen=True)
class WeightsChoice:
    """The weights a query chose, with the score it was chosen by and whether they are sample weights."""

    query: ModelQuery
    entry: WeightsEntry
    candidates: int = 1
    by_name: bool = False

    @property
    def score(self) -> tuple[str, float] | None:
        """The score the card records (see :func:`score_of`)."""
        return score_of(self.entry.card.metrics, self.entry.card.dataset)

    @property
    def sample(self) -> bool:
        """Sample weights: trained briefly to exercise the pipeline, not to map real data."""
        return is_sample(self.entry.card.training)

    def describe(self) -> str:
        """One line: the name asked, the weights chosen, their file and score."""
        score = f", {self.score[0]} {self.score[1]:.1f}" if self.score else ", no recorded score"
        others = f" (best of {self.candidates})" if self.candidates > 1 else ""
        name, path = printable(self.entry.name), printable(str(self.entry.path))
        return f"--model {printable(self.query.text)}: {name}{others} from {path}{score}"

    def warning(self) -> str | None:
        """The one-line warning when a query (not the file's own name) chose sample weights, or None."""
        if not self.sample or self.by_name:
            return None
        card = self.entry.card
        return (
            f"{printable(self.entry.name)} are sample weights, trained minutes on one tile to exercise the "
            "pipeline: the map shows what the tool does, not what the network can; "
            + how_to_get(card.arch, card.dataset)
        )


def how_to_get(arch: str | None, dataset: str | None) -> str:
    """The three ways to weights: train them, import a checkpoint, or name a file."""
    arch, dataset = arch or "manet", (dataset or "potsdam").lower()
    return (
        f"get weights with 'aerialseg train --dataset {dataset} --arch {arch}', "
        f"'aerialseg weights import CHECKPOINT --arch {arch} --dataset {dataset}', "
        "or give a weights file's path"
    )


def is_sample(training: str) -> bool:
    """Whether a card's training notes mark its weights as sample weights."""
    return training.startswith(SAMPLE_WEIGHTS_MARK)


def _vocabulary() -> dict[str, tuple[str, str]]:
    """Every word a query may use: ``word -> (kind, canonical value)``."""
    words: dict[str, tuple[str, str]] = {arch: ("arch", arch) for arch in ARCHITECTURES}
    for spec in MODELS:
        words[spec.backbone] = ("backbone", spec.backbone)
        words[spec.backbone.replace("resnet", "r")] = ("backbone", spec.backbone)
    for name in DATASETS:
        words[name] = ("dataset", name)
    return words


def parse_query(text: str, extra_datasets: Sequence[str] = ()) -> ModelQuery | None:
    """The query ``text`` spells, or None when a part is no known word (it is then only a name).

    ``extra_datasets`` are more dataset names (those on installed cards, such as a user's own).
    Raises :class:`~aerialseg.errors.UnknownModelError` for a query naming two architectures,
    backbones or datasets, or a prefix that fits several words.
    """
    words = _vocabulary() | {name.lower(): ("dataset", name.lower()) for name in extra_datasets if name}
    found: dict[str, list[str]] = {"arch": [], "backbone": [], "dataset": []}
    parts = [part for part in re.split(r"[-_]", text.strip().lower()) if part]
    if not parts:
        return None
    for part in parts:
        if part in words:
            kind, value = words[part]
        else:
            fits = sorted({words[word] for word in words if word.startswith(part)})
            if not fits:
                return None
            if len(fits) > 1:
                names = ", ".join(value for _, value in fits)
                raise UnknownModelError(
                    f"--model {printable(text)}: {part!r} fits several names ({names})", hint="spell it out"
                )
            kind, value = fits[0]
        if value not in found[kind]:
            found[kind].append(value)
    for kind, values in found.items():
        if len(values) > 1:
            label = {"arch": "architectures", "backbone": "backbones", "dataset": "datasets"}[kind]
            raise UnknownModelError(
                f"--model {printable(text)} names several {label} ({', '.join(values)})", hint="name one"
            )
    return ModelQuery(text, *(values[0] if values else None for values in found.values()))


def score_of(card_metrics: dict[str, Any], dataset: str | None) -> tuple[str, float] | None:
    """The score a card records (held-out test before validation), as ``(label, percent)``; None without one.

    ``train`` records its validation scores at the top of the card's metrics, with the split's
    name; cards assembled by hand (the sample weights) keep them in named sections.
    """
    key, label = ("miou", "mIoU") if (dataset or "").lower() == "uavid" else ("mean_f1", "mean F1")
    split = card_metrics.get("split")
    top = [(card_metrics, f"{split} split")] if isinstance(split, str) else []
    named = [(card_metrics.get(section), where) for section, where in _SCORE_SECTIONS]
    for scores, where in [*named[:2], *top, *named[2:]]:
        if not isinstance(scores, dict):
            continue
        for name, shown in ((key, label), ("mean_f1", "mean F1"), ("miou", "mIoU")):
            value = scores.get(name)
            if isinstance(value, int | float) and value == value:  # NaN: no score
                return f"{where} {shown}", float(value)  # cards record percentages
    return None


def choose(text: str, entries: Sequence[WeightsEntry]) -> WeightsChoice | None:
    """The best weights among ``entries`` for the query ``text``; None when ``text`` is no query.

    Raises :class:`~aerialseg.errors.UnknownModelError` when the query matches no weights,
    naming what is installed and how to get weights.
    """
    query = parse_query(text, [entry.card.dataset or "" for entry in entries])
    if query is None:
        return None
    matching = [entry for entry in entries if query.matches(entry)]
    if not matching:
        installed = ", ".join(printable(e.name) for e in entries) or "none"
        raise UnknownModelError(
            f"no weights for {query.describe()} (--model {printable(text)}); installed: {installed}",
            hint=query.how_to_get(),
        )

    def rank(entry: WeightsEntry) -> tuple[bool, bool, float]:
        score = score_of(entry.card.metrics, entry.card.dataset)
        return (not is_sample(entry.card.training), score is not None, score[1] if score else 0.0)

    best = max(matching, key=rank)  # max keeps the first of equals: the search path's order
    return WeightsChoice(query, best, len(matching))
