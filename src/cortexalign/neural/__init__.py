"""Neural data: responses as labelled ``xarray.DataArray`` and RDM sets, with their loaders."""

from cortexalign.neural._brainio import is_brainio_assembly, load_brainio_assembly
from cortexalign.neural._cluster_selection import select_cluster_centres
from cortexalign.neural._data import (
    RDMSet,
    align_ids,
    check_finite,
    make_responses,
    validate_responses,
)
from cortexalign.neural._loaders import (
    NEURAL,
    load_neural,
    load_rdms_npz,
    load_responses_csv,
    load_responses_netcdf,
    load_responses_npz,
)
from cortexalign.neural._maps import WEIGHTINGS, neuron_maps, stimuli_on_grid
from cortexalign.neural._reliability import split_half_reliability
from cortexalign.neural._selection import add_reliability, balanced_sample, select_neuroids
from cortexalign.neural.fmri import load_nifti_responses, load_nsd, load_voxel_table

__all__ = ["RDMSet", "make_responses", "validate_responses", "align_ids", "check_finite", "NEURAL",
           "load_neural", "load_rdms_npz", "load_responses_csv", "load_responses_netcdf",
           "load_responses_npz"]
__all__ += ["neuron_maps", "stimuli_on_grid", "WEIGHTINGS", "split_half_reliability", "add_reliability", "balanced_sample", "select_neuroids"]  # noqa: E501
__all__ += ["load_nsd", "load_nifti_responses", "load_voxel_table"]
__all__ += ["load_brainio_assembly", "is_brainio_assembly"]
from cortexalign.neural.allen import _datasets  # noqa: E402,F401  registers the allen.* datasets

__all__ += ["select_cluster_centres"]
