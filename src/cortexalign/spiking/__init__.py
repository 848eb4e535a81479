"""Brain-inspired spiking transformers: neurons, attention, models, training and measures.

Models: the QKFormer-style hierarchical baseline (``hst_*``), SpiLiFormer (``spiliformer_*``,
lateral inhibition) and TDFormer (``tdformer_*``, top-down feedback across time steps),
registered in ``SNN_MODELS`` and built with ``create_snn``. See METHODS.md sections 3-4.
"""

from cortexalign.spiking._checkpoint import load_weights
from cortexalign.spiking._configs import FAMILIES, SNN_MODELS, HSTConfig, snn_config
from cortexalign.spiking._data import ImageData, load_image_data, to_input
from cortexalign.spiking.attention import ATTENTIONS, ProcessingModule, SpikingAttention
from cortexalign.spiking.energy import EnergyReport, firing_rates, measure_energy
from cortexalign.spiking.features import (
    attention_names,
    extract_attention_maps,
    extract_features,
    layer_names,
)
from cortexalign.spiking.information import MI_ESTIMATORS, mutual_information, time_step_mi
from cortexalign.spiking.models import SpikingTransformer, create_snn
from cortexalign.spiking.neurons import (
    LIF_KERNELS,
    SURROGATES,
    MultiStepLIF,
    lif_multistep,
    reset_states,
)
from cortexalign.spiking.step import StepOutput, TrainStep, snn_optimizer
from cortexalign.spiking.train import (
    ANN_PREFIX,
    TrainConfig,
    TrainResult,
    build_classifier,
    evaluate_snn,
    step_work,
    train_snn,
)

__all__ = [
    "SNN_MODELS", "FAMILIES", "HSTConfig", "snn_config", "create_snn", "SpikingTransformer",
    "ATTENTIONS", "SpikingAttention", "ProcessingModule",
    "LIF_KERNELS", "SURROGATES", "MultiStepLIF", "lif_multistep", "reset_states",
    "layer_names", "attention_names", "extract_features", "extract_attention_maps",
    "EnergyReport", "measure_energy", "firing_rates",
    "MI_ESTIMATORS", "mutual_information", "time_step_mi",
    "TrainConfig", "TrainResult", "train_snn", "evaluate_snn", "build_classifier", "ANN_PREFIX",
    "step_work",
    "TrainStep", "StepOutput", "snn_optimizer", "load_weights",
    "ImageData", "load_image_data", "to_input",
]
