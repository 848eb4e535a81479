"""Human fMRI: the NSD loader, generic NIfTI/table loaders, ROI masks, NCSNR noise ceilings and
fsaverage surface maps, and the NSD images (searchlight RSA is a measure:
``cortexalign.metrics.searchlight_rsa``). Needs nibabel (nilearn for surface maps, h5py for
hdf5 files)."""

from cortexalign.neural.fmri._volume import load_image
from cortexalign.neural.fmri.ceiling import ncsnr_from_trials, noise_ceiling_from_ncsnr
from cortexalign.neural.fmri.generic import load_nifti_responses, load_voxel_table
from cortexalign.neural.fmri.nsd import load_nsd, nsd_stimulus_id, read_nsd_design
from cortexalign.neural.fmri.nsd_stimuli import load_nsd_stimuli, nsd_id_from_stimulus_id
from cortexalign.neural.fmri.rois import NSD_ATLASES, RoiSelection, read_ctab, select_roi_voxels
from cortexalign.neural.fmri.surface import (
    plot_surface_values,
    plot_voxel_values,
    vertex_values_to_mesh,
    volume_to_fsaverage,
)

__all__ = ["load_nsd", "read_nsd_design", "nsd_stimulus_id", "load_nsd_stimuli",
           "nsd_id_from_stimulus_id", "load_nifti_responses",
           "load_voxel_table", "ncsnr_from_trials", "noise_ceiling_from_ncsnr", "NSD_ATLASES",
           "RoiSelection", "read_ctab", "select_roi_voxels", "volume_to_fsaverage", "vertex_values_to_mesh",
           "plot_surface_values", "plot_voxel_values"]
__all__ += ["load_image"]
