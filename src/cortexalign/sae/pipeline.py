"""SAE-BrainMap end to end: layer tokens -> one SAE per layer -> unit activations -> matching ->
voxel dictionary -> analyses (hierarchy, ROI consistency, ROI RSA) [-> files and surface maps,
``sae.outputs``]. From a config file (model, stimuli, NSD data, results store): ``sae.runner``.

Each stage is an importable function (``train.train_sae``, ``match.*``, ``analysis.*``); this
module only wires them, with ``BrainMapConfig`` (validated from ``configs/sae_brainmap.yaml``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cortexalign.errors import InputError
from cortexalign.neural import align_ids
from cortexalign.sae.analysis import best_layer, roi_consistency, roi_rsa
from cortexalign.sae.config import SAEConfig
from cortexalign.sae.match import (
    MatchResult,
    PermutationResult,
    VoxelDictionary,
    image_unit_activations,
    match_units_to_voxels,
    one_to_one_dictionary,
    permutation_test_best_match,
    voxel_dictionary,
)
from cortexalign.sae.objectives import SAEMetrics
from cortexalign.sae.stream import token_chunks
from cortexalign.sae.train import evaluate_sae, load_sae, train_sae, warn_if_dense

__all__ = ["BrainMapConfig", "BrainMapResult", "run_sae_brainmap", "layer_tokens_from_model",
           "load_brainmap_config", "train_or_load_sae"]


class BrainMapConfig(BaseModel):
    """Settings of an SAE-BrainMap run (defaults: the seed's, METHODS.md section 2)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    model: str = "timm:vit_base_patch16_clip_quickgelu_224.openai"
    """The model (a ``cortexalign.models`` name); the seed: OpenAI CLIP ViT-B/16."""
    model_kwargs: dict[str, Any] = {}
    """Keyword arguments of ``load_model`` (e.g. ``weights``, ``untrained``, timm options)."""
    layers: list[str] = [f"blocks.{i}" for i in range(12)]
    """Layers whose patch tokens get an SAE (the residual stream after each block)."""
    sae: dict[str, Any] = {}
    """``SAEConfig`` fields except ``d_in`` (taken from each layer's width)."""
    epochs: int = 5
    """Passes over the training tokens per layer (the seed: 5 epochs of ImageNet-1k train)."""
    max_tokens: int | None = None
    """Stop each SAE after this many tokens (None: all epochs)."""
    min_steps: int = Field(2000, ge=0)
    """Train each SAE for at least this many optimiser steps, repeating the images' tokens for
    more epochs than ``epochs`` when they are few (ignored with ``train_tokens``). 92 images of
    196 tokens are 4.4 steps an epoch at batch 4,096: five epochs (22 steps) leave an SAE at its
    initialisation, where a ReLU code is about half active. The seed's 5 ImageNet epochs are
    ~60,000 steps."""
    images_per_chunk: int = 64
    """Images whose tokens are read per chunk from the cache."""
    similarity: str = "pearson"
    """Unit-voxel similarity: ``pearson`` (the seed's centred cosine) or ``cosine``."""
    top_m: int = 5
    """Candidate units kept per voxel (for the one-to-one dictionary)."""
    one_to_one: bool = False
    """Also compute the one-to-one (Hungarian) dictionary (our addition)."""
    n_permutations: int = 0
    """Permutations of images for the best-match p-values (0: skip; our addition)."""
    best_layer_by: str = "max"
    """Hierarchy rule: each voxel's best layer by ``max`` or ``mean`` similarity over units."""
    top_units: int = 100
    """Units per layer ranked inside each ROI for the consistency analysis."""
    n_images: int = 20
    """Top images per unit for selectivity."""
    selectivity_threshold: int = 10
    """A unit is selective when more than this many of its top images share a category."""
    roi_categories: dict[str, str] | None = None
    """ROI -> expected category (default ``analysis.ROI_CATEGORIES``)."""
    neural: dict[str, Any] = {}
    """The voxel responses: ``source`` (a name in ``sae.runner.VOXEL_SOURCES``: ``nsd``, the
    default, ``nifti`` or ``table``) and that loader's arguments (for ``nsd``: root, subject,
    sessions, rois, within, space, betas, file_format, design)."""
    stimuli: dict[str, Any] = {}
    """The images: ``source`` (``nsd_stimuli.hdf5`` with optional ``dataset``, or anything
    ``cortexalign.stimuli.load_stimuli`` reads) and options; subset to the voxels' stimulus ids."""
    labels: str | None = None
    """A CSV ``stimulus_id,category`` of category labels per image, for ROI-consistent
    selectivity (None: skip that analysis)."""
    device: str = "auto"
    """Where the model, the SAEs and the matching run (``auto``: CUDA when present)."""
    batch_size: int = 32
    """Images per forward pass of the model during extraction."""
    layers_per_pass: int | None = None
    """Layers extracted per pass over the images (None: all at once). Patch tokens take
    s x t x d x 4 bytes per layer (7.6 GB for 10,000 NSD images on ViT-B/16): lower this to
    bound memory; each pass runs the model over every image again."""
    cache_dir: str | None = None
    """The feature cache (None: ``<output_dir>/cache``)."""
    surface_maps: bool = True
    """Paint best similarity and best layer on surfaces: fsaverage responses and MNI volumes on
    fsaverage; subject-space volumes (NSD func1pt8mm) on the subject's own FreeSurfer surfaces
    (``subject_surfaces``, or NSD's ``freesurfer/subjXX`` found by the loader), else NIfTI maps
    only."""
    subject_surfaces: str | None = None
    """A FreeSurfer subject directory (``surf/{lh,rh}.{white,pial,inflated}``) for subject-space
    volumes; None: the one ``load_nsd`` finds under the NSD root."""
    surface_mesh: str = "fsaverage5"
    """The nilearn fsaverage mesh of the surface figures (``fsaverage5`` is bundled)."""
    name: str = "sae_brainmap"
    """The analysis name shown in the report."""
    output_dir: str | None = None
    """Where checkpoints, tables and figures go (None: nothing is written)."""

    @field_validator("subject_surfaces")
    @classmethod
    def _surfaces_exist(cls, v: str | None) -> str | None:
        if v is not None:
            missing = [f"{h}.{k}" for h in ("lh", "rh") for k in ("white", "pial", "inflated")
                       if not (Path(v) / "surf" / f"{h}.{k}").is_file()]
            if missing:
                raise ValueError(f"{v!r} lacks surf/{', surf/'.join(missing)}: point it at a "
                                 "FreeSurfer subject directory (NSD: nsddata/freesurfer/subjXX)")
        return v

    def sae_config(self, d_in: int) -> SAEConfig:
        """The ``SAEConfig`` of a layer with ``d_in`` features."""
        return SAEConfig.from_dict({**self.sae, "d_in": d_in})


def load_brainmap_config(path: str | Path) -> BrainMapConfig:
    """Read and validate a YAML config; a bad key raises ``InputError`` naming it."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    try:
        cfg = BrainMapConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(".".join(map(str, err["loc"])), "a BrainMapConfig field", err["msg"],
                         "see BrainMapConfig's field docs") from None
    cfg.sae_config(1)  # validates the SAE fields (d_in comes from each layer at run time)
    return cfg


@dataclass
class BrainMapResult:
    """Everything an SAE-BrainMap run produced (see the stages' docs for each field)."""

    sae_metrics: dict[str, SAEMetrics]
    units: dict[str, np.ndarray]
    match: MatchResult
    dictionary: VoxelDictionary
    best_layer_n: np.ndarray
    roi_rsa: dict[str, float]
    consistency: pd.DataFrame | None = None
    one_to_one: VoxelDictionary | None = None
    permutation: PermutationResult | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def dictionary_table(self) -> pd.DataFrame:
        """The voxel dictionary as a table: voxel, layer, unit, r, best layer (and p-values when tested)."""
        d = self.dictionary
        t = pd.DataFrame({"voxel": d.voxel_ids, "layer": d.layer_names(), "unit": d.unit_n,
                          "r": d.r_n, "best_layer": [self.match.layers[i] for i in self.best_layer_n]})
        if self.permutation is not None:
            t["p"], t["p_fwe"] = self.permutation.p_n, self.permutation.p_fwe_n
        return t


def layer_tokens_from_model(adapter: Any, stimuli: Any, layers: Sequence[str], cache: Any = None,
                            batch_size: int = 32, layers_per_pass: int | None = None,
                            progress: bool = False) -> tuple[dict[str, Any], int]:
    """(s, t, d) token activations per layer and the model's number of prefix tokens, via
    ``extract_features(..., pooling='none')``.

    With a cache, layers already cached are not recomputed (nor read: the result holds lazily
    read zarr arrays), and the others are extracted ``layers_per_pass`` at a time, so at most that
    many layers' tokens are in memory at once. Without a cache the result holds numpy arrays.
    """
    from cortexalign.features import extract_features, feature_keys
    from cortexalign.sae.stream import open_cached_tokens

    layers = list(layers)
    n_prefix = int(adapter.num_prefix_tokens)
    if cache is None:
        feats = extract_features(adapter, stimuli, layers, pooling="none", batch_size=batch_size,
                                 progress=progress)
        return {k: f.values for k, f in feats.items()}, n_prefix
    if layers_per_pass is not None and layers_per_pass < 1:
        raise InputError("layers_per_pass", "a positive integer or None", str(layers_per_pass),
                         "e.g. 1 to hold one layer's tokens at a time")
    keys = feature_keys(adapter, stimuli, layers, "none")
    todo = [k for k in layers if not cache.contains(keys[k])]
    step = layers_per_pass or max(1, len(todo))
    for start in range(0, len(todo), step):
        extract_features(adapter, stimuli, todo[start:start + step], pooling="none", cache=cache,
                         batch_size=batch_size, progress=progress)
    return {k: open_cached_tokens(cache, keys[k])[0] for k in layers}, n_prefix


SOURCE_FILE = "tokens.json"


def train_or_load_sae(layer: str, tokens_std: Any, n_prefix: int, cfg: BrainMapConfig,
                      train_chunks: Callable[[], Iterable] | None = None, device=None,
                      source: str | None = None) -> Any:
    """The SAE of ``layer``: loaded from ``<output_dir>/saes/<layer>`` when that checkpoint
    exists (refused when it was trained on other tokens than ``source``), else trained on
    ``train_chunks`` (default: ``tokens_std``'s patch tokens for ``cfg.epochs`` epochs) and
    saved there (with ``source`` beside it).

    Parameters
    ----------
    layer : the layer's name. tokens_std : its (s, t, d) tokens. n_prefix : leading CLS or
        register tokens (not trained on). cfg : the run's ``BrainMapConfig``.
    train_chunks : a callable returning a fresh iterable of (N, d) training chunks.
    device : where to train. source : an identity of the training tokens (a cache key).
    """
    d_in = int(tokens_std.shape[-1])
    scfg = cfg.sae_config(d_in)
    ck = Path(cfg.output_dir) / "saes" / layer if cfg.output_dir else None
    if ck is not None and (ck / "config.json").is_file():
        saved = ck / SOURCE_FILE
        if source is not None and saved.is_file() and json.loads(saved.read_text()) != source:
            raise InputError(f"SAE checkpoint {ck}", f"an SAE trained on these tokens ({source})",
                             f"one trained on {json.loads(saved.read_text())}", "the model or "
                             "the training images changed: use a new output directory or delete "
                             "the saes/ folder to retrain")
        return load_sae(ck, scfg, device=device)  # a mismatching config raises, naming fields

    def chunks():
        if train_chunks is not None:
            yield from train_chunks()
            return
        rng = np.random.default_rng(scfg.seed)
        n_blocks = -(-tokens_std.shape[0] // cfg.images_per_chunk)
        per_epoch = tokens_std.shape[0] * (tokens_std.shape[1] - n_prefix)
        epochs = max(cfg.epochs, -(-cfg.min_steps * scfg.batch_size // max(per_epoch, 1)))
        for _ in range(epochs):
            yield from token_chunks(tokens_std, n_prefix, cfg.images_per_chunk,
                                    rng.permutation(n_blocks))

    sae = train_sae(chunks(), scfg, device=device, max_tokens=cfg.max_tokens, checkpoint=ck).sae
    if ck is not None and source is not None:
        (ck / SOURCE_FILE).write_text(json.dumps(source))
    return sae


def run_sae_brainmap(layer_tokens: Mapping[str, Any], num_prefix_tokens: int,
                     stimulus_ids: Sequence[str], voxels: xr.DataArray, config: BrainMapConfig,
                     *, labels: Sequence[str] | None = None,
                     train_tokens: Mapping[str, Callable[[], Iterable]] | None = None,
                     token_sources: Mapping[str, str] | None = None,
                     device: str | None = None) -> BrainMapResult:
    """Run SAE-BrainMap on given layer tokens and voxel responses.

    Parameters
    ----------
    layer_tokens : layer -> (s, t, d) token activations of the s images the voxels saw (numpy or
        lazily read zarr; see ``layer_tokens_from_model``).
    num_prefix_tokens : leading CLS/register tokens (dropped from training and from the means).
    stimulus_ids : the s ids of the token rows; the voxels are aligned to them by id.
    voxels : responses (stimulus, neuroid) with a ``roi`` coordinate (e.g. from ``load_nsd``).
    labels : a category per image (in ``stimulus_ids`` order) for the selectivity analysis.
    train_tokens : layer -> a callable returning a fresh iterable of (N, d) training chunks
        (e.g. ImageNet tokens via ``cache_token_chunks``); default: the matched images' own tokens
        for ``config.epochs`` epochs.
    token_sources : layer -> an identity of the training tokens (e.g. the feature-cache key),
        saved beside each SAE checkpoint; reloading a checkpoint trained on other tokens raises.
    """
    missing = [k for k in config.layers if k not in layer_tokens]
    if missing:
        raise InputError("layer_tokens", f"tokens for every configured layer {config.layers}",
                         f"missing {missing}", "extract those layers or list fewer in the config")
    idx = align_ids(stimulus_ids, voxels["stimulus"].values, what="voxel responses")
    units, metrics = {}, {}
    for layer in config.layers:
        tok = layer_tokens[layer]
        sae = train_or_load_sae(layer, tok, num_prefix_tokens, config,
                             (train_tokens or {}).get(layer), device,
                             (token_sources or {}).get(layer))
        if hasattr(sae, "calibrate_threshold"):  # BatchTopK: inference L0 = k on these tokens
            sae.calibrate_threshold(lambda tok=tok: token_chunks(tok, num_prefix_tokens,
                                                                 config.images_per_chunk))
        metrics[layer] = evaluate_sae(sae, token_chunks(tok, num_prefix_tokens,
                                                        config.images_per_chunk), device)
        warn_if_dense(metrics[layer], layer)
        units[layer] = image_unit_activations(sae, tok, num_prefix_tokens, device=device)[idx]
    match = match_units_to_voxels(units, voxels, config.similarity, top_m=config.top_m,
                                  device=device)
    dictionary = voxel_dictionary(match)
    res = BrainMapResult(metrics, units, match, dictionary, best_layer(match, config.best_layer_by),
                         roi_rsa(voxels, dictionary, units) if "roi" in voxels.coords else {})
    if config.one_to_one:
        res.one_to_one = one_to_one_dictionary(units, voxels, match, device)
    if config.n_permutations:
        res.permutation = permutation_test_best_match(units, voxels, config.n_permutations,
                                                      config.similarity, device=device)
    if labels is not None and match.roi_names:
        res.consistency = roi_consistency(match, units, np.asarray(labels)[idx],
                                          config.roi_categories, config.top_units,
                                          config.n_images, config.selectivity_threshold)
    if config.output_dir:
        from cortexalign.sae.outputs import write_outputs

        res.files.update(write_outputs(res, voxels, Path(config.output_dir),
                                       config.surface_maps, config.surface_mesh,
                                       config.subject_surfaces))
    return res
