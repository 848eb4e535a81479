"""The study catalogue: one ``register_study`` call per study (imports nothing heavy)."""

from __future__ import annotations

from cortexalign.studies import Study, register_study

__all__: list[str] = []

register_study(Study(
    name="alignment_training",
    title="Brain alignment as a training signal: held-out human IT alignment and task accuracy "
          "across lambda, paired against lambda = 0",
    citation="Kriegeskorte et al. 2008 (human IT RDMs); Blondel et al. 2020 (soft ranks)",
    run="cortexalign.studies.alignment_training:run",
    needs_data=False))

register_study(Study(
    name="sae_brainmap",
    title="SAE-BrainMap: sparse autoencoder units of CLIP ViT-B/16 layers matched to NSD voxels "
          "(dictionary, hierarchy, ROI consistency, permutation p-values)",
    citation="arXiv 2506.11123; Allen et al. 2022 (NSD)",
    run="cortexalign.studies.sae_brainmap:run",
    simulate="cortexalign.studies.sae_brainmap:simulate"))

# Each study adds its entry here, e.g.
# register_study(Study(name="jalil2026", title="...", citation="...",
#                      run="cortexalign.studies.jalil2026:run",
#                      simulate="cortexalign.studies.jalil2026:simulate"))
register_study(Study(
    name="jalil2026",
    title="Attention maps of Segment Anything models vs mouse visual cortex: map metrics, RSA "
          "and encoding per area x Cre line x cortical layer, efficiency and mIoU trade-off",
    citation="Jalil, Qazi & Iqbal, PMLR 308, 2026",
    run="cortexalign.studies.jalil2026:run",
    simulate="cortexalign.studies.jalil2026:simulate"))

register_study(Study(
    name="spiking",
    title="Spiking transformers (QKFormer-style HST, SpiLiFormer, TDFormer) trained on CIFAR-10 "
          "next to a ViT of their size: held-out accuracy, energy, firing rates, time-step MI, "
          "and RSA against human/monkey IT and an Allen-layout target",
    citation="Zhou et al. 2024 (QKFormer); Zheng et al. 2025 (SpiLiFormer); Zhu et al. 2025 "
             "(TDFormer); Kriegeskorte et al. 2008",
    run="cortexalign.studies.spiking:run",
    simulate="cortexalign.studies.spiking:simulate",
    sizes=("cpu",),
    needs_data=False))
