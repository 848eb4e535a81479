"""The ``model_cards`` analysis kind: a config's ``segmentation:`` entry, through the runner.

One unit in the driver, after the other kinds; one job per distinct model entry (name, weights,
options), keyed by the entry and the segmentation set. A job writes the entry's card
(``bench._cards``: efficiency and, for Segment Anything entries, mIoU) with ``store_card`` and is
marked finished; a card that already holds this segmentation set's result is kept as it is (a
rerun redoes nothing), and a model that does not load fails its job (retried by a rerun).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cortexalign.bench._analysis import ANALYSES, AnalysisKind, Plan, Unit
from cortexalign.bench._cards import _done, _load, model_card, store_card
from cortexalign.bench._config import ModelSpec
from cortexalign.bench._context import RunContext

__all__ = ["CardJob", "ModelCardsKind"]


@dataclass(frozen=True)
class CardJob:
    """The card of one model entry: ``key`` (the entry and the segmentation set, hashed)."""

    key: str
    spec: ModelSpec

    @property
    def label(self) -> str:
        """What failures name it by."""
        return f"model card {self.spec.display}"


def _entry(spec: ModelSpec) -> str:
    """What makes two model entries the same model (their cards are one card)."""
    return json.dumps([spec.name, spec.pretrained, spec.weights, spec.untrained, spec.seed,
                       spec.kwargs, spec.preprocess], sort_keys=True, default=str)


class ModelCardsKind(AnalysisKind):
    """One job per distinct model entry of a config with ``segmentation:``."""

    name = "model_cards"
    placement = "driver"

    def units(self, ctx: RunContext) -> list[Unit]:
        """One unit when the config has a ``segmentation:`` entry."""
        if getattr(ctx.config, "segmentation", None) is None:
            return []
        return [Unit("model_cards", "model cards")]

    def plan(self, ctx: RunContext, unit: Unit) -> Plan:
        """A job per distinct model entry, in config order."""
        seg = json.dumps(ctx.config.segmentation.model_dump(mode="json"), sort_keys=True)
        entries = {_entry(spec): spec for spec in reversed(ctx.config.models)}
        jobs = []
        for key in dict.fromkeys(_entry(spec) for spec in ctx.config.models):
            digest = hashlib.sha256(f"{key}\0{seg}".encode()).hexdigest()[:24]
            jobs.append(CardJob(f"model_card:{digest}", entries[key]))
        return Plan(jobs)

    def prepare(self, ctx: RunContext, plan: Plan, todo: list[CardJob]) -> Any:
        """The (model_id, device) cards already holding this segmentation set's result, and the
        device (resolved here: the driver measures)."""
        from cortexalign.device import resolve_device

        return _done(ctx.store, ctx.config.segmentation), resolve_device(ctx.config.device)

    def execute(self, ctx: RunContext, job: CardJob, shared: Any) -> list:
        """Measure and store the entry's card (none when one already holds this set's result)."""
        from cortexalign.models.profile import device_string

        done, device = shared
        adapter = _load(job.spec, device)
        if (adapter.model_id, device_string(adapter.device)) in done:
            return []
        card = store_card(ctx.store, model_card(job.spec, ctx.config.segmentation, device,
                                                adapter=adapter, progress=ctx.progress,
                                                console=ctx.console))
        if ctx.console is not None:
            miou = "-" if card.miou is None else f"{card.miou:.3f}"
            ctx.console.print(f"model card {card.model_id} ({card.device}): mIoU {miou}",
                              markup=False, highlight=False)
        return []


ANALYSES.add("model_cards", ModelCardsKind(), description="model cards: efficiency and "
             "segmentation mIoU of the config's models (segmentation:)")
