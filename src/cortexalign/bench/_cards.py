"""Model cards: efficiency with an entry's own weights and prompted-segmentation mIoU.

One path for every caller: a run whose config has ``segmentation:`` (the ``model_cards``
analysis kind of the runner, ``bench._cards_kind``, after the scores), ``cortexalign miou`` (``model_card`` and ``store_card``) and the studies
(through their configs). mIoU needs the full Segment Anything model: the entry's encoder, and
the prompt encoder and mask decoder from the same official checkpoint (``head_checkpoint``);
without one they are random and the card says so.

A card is keyed by (model_id, device). ``store_card`` keeps what an earlier card of the same key
measured and the new one did not (``cortexalign profile --out`` then ``cortexalign miou --out``
give one card with both), and a run skips models whose card already holds this segmentation
set's mIoU (resume).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from cortexalign.bench._cards_spec import SegmentationSpec
from cortexalign.bench._executors import PROGRESS_COLUMNS
from cortexalign.compute import compute_threads
from cortexalign.errors import InputError

__all__ = ["head_checkpoint", "is_segmenter", "segmenter_name", "model_miou", "model_card", "store_card",
           "check_segmentation"]


def head_checkpoint(name: str, weights: str | Path | None, untrained: bool) -> Path | None:
    """The official checkpoint whose prompt encoder and mask decoder go with a model entry's
    encoder: its ``weights`` (a path or a fetched entry), else the fetched default of the entry
    (``cortexalign fetch``), else ``None`` (random heads)."""
    from cortexalign.fetch import fetched_checkpoint, weights_path

    if untrained:
        return None
    if weights is not None:
        return Path(weights_path(weights)).expanduser()
    return fetched_checkpoint(name)


def is_segmenter(adapter) -> bool:
    """Whether ``adapter`` is an encoder of the Segment Anything family (mIoU can be measured)."""
    from cortexalign.segmentation import SAM_BUILDERS

    return getattr(adapter, "family", None) in SAM_BUILDERS


def segmenter_name(name: str) -> bool:
    """Whether registry name ``name`` is a Segment Anything family entry (nothing is built)."""
    from cortexalign.models import MODELS
    from cortexalign.segmentation import SAM_BUILDERS

    try:
        entry, _ = MODELS.resolve(name)
    except Exception:  # noqa: BLE001 - an unknown name is reported where it is loaded
        return False
    return entry.meta.get("family") in SAM_BUILDERS


_NOT_A_SEGMENTER = ("an encoder of the Segment Anything family (sam_vit_*, sam2_hiera_*, "
                    "mobile_sam, efficient_sam_*, edge_sam*)")


def _sample_progress(samples, n: int, what: str, progress: bool, console: Console | None):
    with Progress(*PROGRESS_COLUMNS, console=console, disable=not progress) as bar:
        task = bar.add_task(f"mIoU {escape(what)}", total=n)
        for sample in samples:
            yield sample
            bar.advance(task)


def model_miou(adapter, seg: SegmentationSpec, checkpoint: str | Path | None, *,
               progress: bool = True, console: Console | None = None):
    """The ``SegmentationResult`` of ``adapter`` on ``seg``'s COCO set (``seg.prompt``, the
    first ``seg.limit`` images), heads from ``checkpoint`` (``None``: random heads)."""
    from cortexalign.segmentation import (
        check_coco,
        evaluate_segmentation,
        read_coco,
        sam_predictor,
    )

    if not is_segmenter(adapter):
        raise InputError("model", _NOT_A_SEGMENTER, repr(getattr(adapter, "model_id", adapter)),
                         "mIoU needs a promptable segmenter; use `cortexalign profile` for "
                         "other models")
    n = check_coco(seg.coco, seg.images, seg.limit)
    predictor = sam_predictor(adapter, checkpoint)
    samples = _sample_progress(read_coco(seg.coco, seg.images, seg.limit), n, adapter.model_id,
                               progress, console)
    with compute_threads(math.inf):  # one thread when other processes keep the cores busy
        return evaluate_segmentation(samples, predictor, prompt=seg.prompt)


def _segmentation_extra(seg: SegmentationSpec, result, checkpoint, note: str) -> dict[str, Any]:
    return {"coco": str(seg.coco), "prompt": seg.prompt, "limit": seg.limit,
            "images": None if result is None else result.n_images,
            "instances": None if result is None else result.n_instances,
            "heads": str(checkpoint) if checkpoint is not None else
            "random (no official checkpoint: the mIoU is not the model's)", "note": note}


def store_card(store, card) -> Any:
    """Put ``card`` in ``store``, keeping the fields an earlier card of the same (model_id,
    device) has and this one lacks (``None``); ``extra`` is merged. Returns the stored card."""
    have = store.frame("model_cards")
    if len(have):
        old = have[(have["model_id"] == card.model_id) & (have["device"] == card.device)]
        if len(old):
            row = old.iloc[0]
            fill = {f: row[f] for f in ("params", "flops", "latency_ms", "peak_mem_mb", "miou")
                    if getattr(card, f) is None and row[f] is not None and row[f] == row[f]}
            extra = json.loads(row["extra"]) if isinstance(row["extra"], str) else {}
            card = dataclasses.replace(card, **fill, extra={**extra, **card.extra})
    store.put_model_card(card)
    return card


def _done(store, seg: SegmentationSpec) -> set[tuple[str, str]]:
    """(model_id, device) of the cards that already hold this segmentation set's result."""
    have = store.frame("model_cards")
    done = set()
    for _, row in have.iterrows():
        extra = json.loads(row["extra"]) if isinstance(row["extra"], str) else {}
        seg_extra = extra.get("segmentation") or {}
        if (seg_extra.get("coco"), seg_extra.get("prompt"), seg_extra.get("limit")) == (
                str(seg.coco), seg.prompt, seg.limit):
            done.add((row["model_id"], row["device"]))
    return done


def _load(spec, device):
    from cortexalign.models import load_model

    return load_model(spec.name, pretrained=spec.pretrained, weights=spec.weights,
                      untrained=spec.untrained, seed=spec.seed, device=device,
                      preprocess=spec.preprocess or None, **spec.kwargs)


def model_card(spec, seg: SegmentationSpec, device, *, adapter=None, progress: bool = True,
               console: Console | None = None):
    """The ``ModelCard`` of one model entry (``ModelSpec``): mIoU on ``seg``'s COCO set when it
    is a Segment Anything model (else ``None``, with a note), and parameters, FLOPs, latency and
    memory when ``seg.profile_repeats > 0``; ``extra`` says which weights and heads were used.
    ``adapter``: the entry already loaded on ``device``."""
    from cortexalign.models.profile import device_string, profile_model
    from cortexalign.results import ModelCard

    adapter = _load(spec, device) if adapter is None else adapter
    checkpoint = head_checkpoint(spec.name, spec.weights, spec.untrained)
    result, note = None, ""
    if is_segmenter(adapter):
        try:
            result = model_miou(adapter, seg, checkpoint, progress=progress, console=console)
        except ImportError as err:  # segment-anything / sam2 not installed
            note = f"mIoU not measured: {err} (pip install 'cortexalign[sam]')"
    else:
        note = "not a Segment Anything model: no mIoU"
    extra = {"weights": spec.weights or (f"untrained (seed {spec.seed})" if spec.untrained
                                         else "default"),
             "segmentation": _segmentation_extra(seg, result, checkpoint, note)}
    miou = None if result is None else result.miou
    if seg.profile_repeats:
        card = ModelCard.from_profile(profile_model(adapter, device=device, n_warmup=1,
                                                    n_repeat=seg.profile_repeats), miou)
    else:
        card = ModelCard(adapter.model_id, device_string(adapter.device), miou=miou)
    return dataclasses.replace(card, extra={**card.extra, **extra})


def check_segmentation(config) -> None:
    """The ``segmentation:`` entry before anything is written: the COCO set (file, images) and
    at least one Segment Anything model entry to measure."""
    from cortexalign.segmentation import check_coco

    seg = config.segmentation
    if seg is None:
        return
    check_coco(seg.coco, seg.images, seg.limit)
    if not any(segmenter_name(spec.name) for spec in config.models):
        raise InputError("segmentation", f"a model entry to measure mIoU for: {_NOT_A_SEGMENTER}",
                         "none among the models",
                         "add one (e.g. name: mobile_sam), or remove segmentation:")
