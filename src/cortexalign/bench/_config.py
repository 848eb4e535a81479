"""The experiment config: a pydantic schema that YAML files and the CLI are validated by.

An unknown key fails with its location and the close matches (``models[1].pooling_mode``:
did you mean ``pooling``?), never silently ignored.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from cortexalign.bench._cards_spec import SegmentationSpec
from cortexalign.bench._partition_spec import PartitionSpec
from cortexalign.bench._second_order_spec import DiscriminabilitySpec, PatternSpec
from cortexalign.errors import CortexAlignError

__all__ = ["ExperimentConfig", "ModelSpec", "NeuralSpec", "NeuralSelect", "MetricSpec",
           "StimuliSpec", "RaySpec", "ConfigError", "CONFIG_HELP"]


#: The last line of every config error: where the keys are described.
CONFIG_HELP = ("Fix the entries above. `cortexalign config keys` lists every key with its type, "
               "default and meaning; `cortexalign config template` prints a config with all of "
               "them; `cortexalign config check FILE` checks a file without running it.")


class ConfigError(CortexAlignError):
    """A config file that does not validate; the message points at the bad key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StimuliSpec(_Strict):
    """Where the images come from."""

    source: str = Field(description="A bundled set name (e.g. 'kriegeskorte92'), a folder of "
                                    "images, or an .npz file with an 'images' array.")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="Keyword arguments for the loader (e.g. images_key).")


class ModelSpec(_Strict):
    """One model, and which of its layers to score."""

    name: str = Field(description="A registered model ('efficientnet_lite0', 'gabor_v1'), "
                                  "'timm:<timm model name>' or 'torchvision:<torchvision "
                                  "classifier>'. See `cortexalign models`.")
    label: str | None = Field(None, description="Name shown in results and figures "
                                                "(default: the name, plus '(untrained)').")
    pretrained: bool | None = Field(None, description="Load pretrained weights (model default "
                                                      "when omitted).")
    weights: str | None = Field(None, description="A local .safetensors or torch state-dict file.")
    untrained: bool = Field(False, description="Re-initialise the architecture: the untrained "
                                               "control.")
    seed: int = Field(0, description="Seed of the untrained initialisation.")
    layers: list[str] | Literal["all"] = Field("all", description="Layer names, or 'all'.")
    pooling: str = Field("mean", description="How a layer's output becomes one vector per "
                                             "stimulus: mean, cls, flatten, max or none.")
    kwargs: dict[str, Any] = Field(default_factory=dict,
                                   description="Extra keyword arguments for the model constructor.")
    preprocess: dict[str, Any] = Field(
        default_factory=dict, description="Settings replacing the model's own preprocessing "
        "(cortexalign.models.with_options): size, resize (shorter_side_center_crop | "
        "longest_side_pad | stretch), crop_pct, interpolation, mean and std on the [0, 1] scale "
        "or a preset (mean: imagenet | clip | none). Grey images are always repeated to RGB.")
    features: Literal["activations", "attention", "conv_map"] = Field(
        "activations", description="What a layer contributes: 'activations' (pooled with "
        "'pooling'), 'attention' (one (gh, gw) attention map per stimulus from each attention "
        "block; 'layers' then names attention blocks, 'all' = every block) or 'conv_map' (mean "
        "|activation| over channels of each spatial layer). Maps are flattened for RSA and "
        "encoding and kept as maps for the map_* metrics.")
    feature_options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the map features: attention "
        "{reduction: received | cls | rollout, chunk_size}; conv_map {kind: mean_abs | topk, "
        "k}. See cortexalign.features.FEATURE_KINDS.")

    @property
    def display(self) -> str:
        """The model's name in tables and figures: its label, else its registry name."""
        return self.label or (self.name + (" (untrained)" if self.untrained else ""))

    @property
    def kind_options(self) -> dict[str, Any]:
        """The options of its feature kind (``features.extract``): ``pooling`` for activations,
        ``feature_options`` for the maps."""
        if self.features == "activations":
            return {"pooling": self.pooling}
        return dict(self.feature_options)


class NeuralSelect(_Strict):
    """Which neuroids of a responses target to keep (``cortexalign.neural.select_neuroids``)."""

    area: list[str] | None = Field(None, description="Visual areas to keep (e.g. [VISp, VISl]); "
                                                     "unknown ones fail with the valid list.")
    cre_line: list[str] | None = Field(None, description="Cre lines to keep; a driver gene "
                                                         "('Sst') matches 'Sst-IRES-Cre'.")
    cell_class: list[str] | None = Field(None, description="'excitatory' and/or 'inhibitory'.")
    depth: tuple[float, float] | None = Field(None, description="(min, max) imaging depth, um.")
    min_reliability: float | None = Field(None, description="Keep neuroids whose split-half "
                                          "(Spearman-Brown) reliability is at least this.")
    cluster_centres: int | None = Field(None, description="The seed paper's selection, after "
                                        "the criteria above: this many neurons, half excitatory "
                                        "and half inhibitory, each nearest a k-means centre of "
                                        "an embedding of the response profiles "
                                        "(cortexalign.neural.select_cluster_centres).")
    embedding: Literal["umap", "pca"] | None = Field(None, description="The embedding of "
                                                     "cluster_centres: umap (default, the "
                                                     "paper's; pip install umap-learn) or pca "
                                                     "(no extra package).")


class PublishedCeiling(_Strict):
    """A target's own noise ceiling from its paper, used instead of the computed one."""

    low: float = Field(allow_inf_nan=False, description="Lower bound of the published ceiling.")
    high: float = Field(allow_inf_nan=False, description="Upper bound (equal to low when the "
                                                         "paper gives one number).")
    source: str = Field("", description="Where it comes from, e.g. 'Nili et al. 2014, Fig. 3'.")

    @model_validator(mode="after")
    def _ordered(self) -> PublishedCeiling:
        if self.low > self.high:
            raise ValueError(f"ceiling low ({self.low}) is above high ({self.high}); copy both "
                             "bounds from the paper (equal when it gives one number)")
        return self


class NeuralSpec(_Strict):
    """One neural target: a registered dataset or a file, optionally selected and split."""

    source: str = Field(description="A registered dataset ('kriegeskorte92.human_IT', "
                                    "'allen.ophys_natural_scenes') or a .nc/.csv/.npz file. "
                                    "See `cortexalign datasets`.")
    label: str | None = Field(None, description="Name shown in results (default: the source).")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="Keyword arguments of the dataset loader (e.g. "
                                                "path: an NWB file, folder or AllenSDK cache; "
                                                "statistic: mean | peak).")
    select: NeuralSelect | None = Field(None, description="Keep only these neuroids (responses "
                                                          "targets).")
    split_by: list[str] = Field(default_factory=list,
                                description="Neuroid coordinates to split into one target per "
                                            "group, e.g. [area], [area, cre_line], [cell_class]; "
                                            "labels read '<label>/VISp/Cux2' (Cre lines by "
                                            "driver gene).")
    min_neuroids: int = Field(1, ge=1, description="Groups with fewer neuroids are left out "
                                                   "(with a warning).")
    ceiling: PublishedCeiling | None = Field(None, description="The target's published noise "
                                             "ceiling {low, high, source}: shown as published "
                                             "instead of the computed one (not with split_by: "
                                             "one published number cannot hold for each group).")

    @model_validator(mode="after")
    def _ceiling_whole(self) -> NeuralSpec:
        if self.ceiling is not None and self.split_by:
            raise ValueError(f"a published ceiling holds for a whole target, not for each group "
                             f"of split_by {self.split_by}; drop split_by, or drop the ceiling "
                             "(each group then gets its computed one)")
        return self

    @property
    def display(self) -> str:
        """The target's name in tables and figures: its label, else its source."""
        return self.label or self.source


class MetricSpec(_Strict):
    """One measure and its options."""

    name: str = Field(description="A registered metric. See `cortexalign metrics`.")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="Keyword arguments of the metric (e.g. compare: "
                                                "kendall_tau_a).")


class RaySpec(_Strict):
    """How ``executor: ray`` finds its cluster and sizes its tasks (``cortexalign.bench._ray``)."""

    address: str | None = Field(None, description="null: start a local Ray for the run (or use "
                                "the one this process already started); 'auto': the cluster this "
                                "machine belongs to (`ray start`, RAY_ADDRESS); 'host:port' or "
                                "'ray://host:port': that cluster.")
    num_workers: int | None = Field(None, ge=1, description="Most models computed at once. A "
                                    "local Ray gets num_workers x num_cpus_per_worker CPUs "
                                    "(default: all cores); on a cluster, default: as many as its "
                                    "resources allow.")
    num_cpus_per_worker: float = Field(1.0, gt=0, description="CPUs a model's task asks for "
                                       "(torch uses that many threads).")
    num_gpus_per_extraction: float | None = Field(None, ge=0, description="GPUs a model's task "
                                                  "asks for (fractions share a GPU); default: 1 "
                                                  "when the cluster has GPUs and device is not "
                                                  "'cpu', else 0.")
    timeout_s: float = Field(10.0, gt=0, description="Seconds to wait for a Ray address to "
                             "answer before the run stops with an error.")
    ship_package: bool = Field(True, description="Send this cortexalign package to the workers "
                               "(the job's runtime_env py_modules, set when the run starts or "
                               "connects to Ray), so nodes need only its dependencies installed, "
                               "not cortexalign itself.")
    max_retries: int = Field(1, ge=0, description="Times a model whose worker died (killed, out "
                             "of memory, node lost) is submitted again, without the jobs the "
                             "driver already wrote; then its unfinished jobs are failed.")


#: Fields that say where or how jobs run, not what they compute: outside the config hash.
EXECUTION_FIELDS = frozenset({"executor", "ray", "max_feature_memory_gb",
                              "cache_storage_options"})


class ExperimentConfig(_Strict):
    """An experiment: stimuli x models x neural targets x metrics."""

    name: str = Field("experiment", description="A name for the run.")
    stimuli: StimuliSpec
    models: list[ModelSpec] = Field(min_length=1)
    neural: list[NeuralSpec] = Field(min_length=1)
    metrics: list[MetricSpec] = Field(min_length=1)
    partitions: list[PartitionSpec] = Field(
        default_factory=list, description="Analyses of several feature sets at once, run after "
        "the per-layer jobs on the cached features of each set: variance partitioning (unique "
        "and shared R^2) or banded ridge (per-set share of R^2) of (model, layer) sets against "
        "each responses target. Stored in the 'partitions' table; a report section. See "
        "cortexalign.bench._partition_spec.")
    patterns: list[PatternSpec] = Field(
        default_factory=list, description="Alignment pattern analyses (Höfling et al. 2026), "
        "run after the per-layer jobs on the cached features: a multi-region target's region x "
        "region matrix and each model layer's profile put in a region's place. Stored in "
        "'second_order'; a report section. See cortexalign.bench._second_order_spec.")
    discriminability: DiscriminabilitySpec | None = Field(
        None, description="How well each (target, metric entry) separates the models: rank "
        "probabilities, FDR-separated pairs, rank intervals, under the best-layer and "
        "cross-validated layer rules (also `cortexalign results OUT --discriminability`).")
    segmentation: SegmentationSpec | None = Field(
        None, description="Model cards at the end of the run: one per distinct model entry, "
        "with its parameters, FLOPs, latency and memory, and for Segment Anything family "
        "entries the prompted mIoU on this COCO set (heads from the entry's official "
        "checkpoint). The report's trade-off section reads them. See "
        "cortexalign.bench._cards_spec.")
    n_bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples over stimuli for "
                                                     "confidence intervals (0: none).")
    n_permutations: int = Field(0, ge=0, description="Stimulus-label permutations for p-values "
                                "of RSA and map metrics (0: none); Benjamini-Hochberg across "
                                "the groups of each split target is stored as extra.p_fdr.")
    seed: int = Field(0, description="Seed of every random step (bootstrap, permutations).")
    batch_size: int | None = Field(
        None, ge=1, description="Images per forward pass. Unset: chosen from the free GPU "
        "memory and the memory of a probe batch (32 on the CPU); either way an out-of-memory "
        "error halves it, the extraction resumes where it stopped, and the run stores a note "
        "(cortexalign.features._batching).")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu' or 'cuda:N'.")
    cache_dir: str | None = Field(None, description="Feature cache folder (default: OUT/cache), "
                                  "or an fsspec URL (s3://bucket/cache, gs://...) that Ray "
                                  "workers on other machines share without a shared disk "
                                  "(cortexalign.features._cache_remote; needs s3fs / gcsfs).")
    cache_storage_options: dict[str, Any] | None = Field(
        None, description="fsspec options of a URL cache_dir (e.g. endpoint_url); credentials "
        "are better left to the environment (AWS_ACCESS_KEY_ID...). Not part of the config "
        "hash.")
    executor: Literal["local", "ray"] = Field(
        "local", description="Where jobs run: 'local' (this process, progress bars) or 'ray' "
        "(one Ray task per model on a Ray cluster; see 'ray'). Not part of the config hash: a "
        "run may be resumed with the other executor.")
    ray: RaySpec = Field(default_factory=RaySpec,
                         description="Settings of executor: ray (ignored by 'local').")
    max_feature_memory_gb: float | None = Field(
        None, description="Most gigabytes (1e9 bytes) of a model's pooled features, or of its "
        "attention / conv maps (features: attention, conv_map), held in memory (null: no limit, "
        "every layer in memory). When one probe image says the model's layers need more "
        "(s x features x 4 bytes), they are written batch by batch into the "
        "feature cache instead: rsa and cka_* are scored from the RDM or Gram matrix streamed "
        "from it in row blocks; metrics "
        "that need the features themselves (ridge, pls, map_*) read a layer whole if it alone "
        "fits, else that job fails with the fix. Same scores either way; not part of the "
        "config hash. A partition holds its sets whole (float64, with the method's working "
        "memory): one estimated over the budget fails the run before anything is written.")

    @field_validator("max_feature_memory_gb")
    @classmethod
    def _positive_budget(cls, gb: float | None) -> float | None:
        if gb is not None and not gb > 0:
            raise ValueError(f"max_feature_memory_gb must be a positive number of gigabytes "
                             f"(e.g. 8), or null for no limit; got {gb}")
        return gb

    @field_validator("models")
    @classmethod
    def _unique_labels(cls, models: list[ModelSpec]) -> list[ModelSpec]:
        labels = [m.display for m in models]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"two models share the label {dupes[0]!r}; give each a distinct "
                             "'label'")
        return models

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the validated config (what determines the results).

        Where the jobs run (``executor``, ``ray``) is left out: it does not change a score.
        """
        # a config without partitions (patterns, discriminability) hashes as it did before the
        # key existed
        skip = EXECUTION_FIELDS | (set() if self.partitions else {"partitions"}) | \
            (set() if self.patterns else {"patterns"}) | \
            (set() if self.discriminability else {"discriminability"}) | \
            (set() if self.segmentation else {"segmentation"})
        dump = self.model_dump(mode="json", exclude=skip)
        if dump["batch_size"] is None:  # unset hashes as the old default did (same features)
            dump["batch_size"] = 32
        for m in dump["models"]:  # an entry without preprocess hashes as before the key existed
            if not m.get("preprocess"):
                m.pop("preprocess", None)
        for n in dump["neural"]:  # so does a select without the cluster-centre selection
            for key in ("cluster_centres", "embedding"):
                if (n.get("select") or {}).get(key, 0) is None:
                    n["select"].pop(key)
            if n.get("ceiling", 0) is None:  # and a target without a published ceiling
                n.pop("ceiling")
        blob = json.dumps(dump, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_yaml(self) -> str:
        """The config as YAML (what the results store keeps with each run)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
