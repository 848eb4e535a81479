"""Allen Brain Observatory (Visual Coding) natural-scenes data: two-photon and Neuropixels loaders,
the stimulus template as a ``StimulusSet``, and precomputed response tables.

Nothing here downloads; AllenSDK is not needed. To use data an AllenSDK cache already holds, point
the loaders at the NWB files inside it::

    # BrainObservatoryCache(manifest_file="<cache>/manifest.json") keeps two-photon experiments as
    #   <cache>/ophys_experiment_data/<ophys_experiment_id>.nwb
    # natural scenes are shown in session B: in AllenSDK,
    #   boc.get_ophys_experiments(stimuli=["natural_scenes"]) lists those experiment ids.
    import h5py
    from cortexalign.neural.allen import load_natural_scenes_stimuli, load_ophys_natural_scenes
    files = sorted(Path("<cache>/ophys_experiment_data").glob("*.nwb"))
    ns_files = [p for p in files
                if "stimulus/presentation/natural_scenes_stimulus" in h5py.File(p, "r")]
    responses = load_ophys_natural_scenes(ns_files)        # (stimulus, neuroid, repetition)
    stimuli = load_natural_scenes_stimuli(ns_files[0])     # ids ns000..ns117 match

    # EcephysProjectCache(manifest="<cache>/manifest.json") keeps sessions as
    #   <cache>/session_<id>/session_<id>.nwb (brain_observatory_1.1 sessions show natural scenes)
    #   and the template as <cache>/natural_scene_templates/natural_scene_<frame>.tiff
    from cortexalign.neural.allen import load_ecephys_natural_scenes
    units = load_ecephys_natural_scenes("<cache>/session_715093703/session_715093703.nwb")

A file without natural scenes fails with the stimuli it does hold; ``stimuli`` and responses share
ids ``ns000``..``ns117`` (and ``blank`` with ``include_blank=True``), and
``cortexalign.neural.align_ids`` names any mismatch.
"""

from cortexalign.neural.allen._ecephys import ALLEN_UNIT_FILTER, load_ecephys_natural_scenes
from cortexalign.neural.allen._meta import (
    AREAS,
    BLANK_ID,
    CRE_CLASS,
    CRE_LAYER,
    cell_class,
    cortical_layer,
    cre_gene,
    natural_scene_id,
    natural_scene_ids,
    parse_genotype,
)
from cortexalign.neural.allen._ophys import RESPONSE_STATISTICS, load_ophys_natural_scenes
from cortexalign.neural.allen._tables import load_response_table
from cortexalign.neural.allen._templates import BLANK_LEVEL, load_natural_scenes_stimuli

__all__ = ["AREAS", "BLANK_ID", "BLANK_LEVEL", "CRE_CLASS", "ALLEN_UNIT_FILTER",
           "RESPONSE_STATISTICS", "cell_class", "natural_scene_id", "natural_scene_ids",
           "parse_genotype", "load_ophys_natural_scenes", "load_ecephys_natural_scenes",
           "load_natural_scenes_stimuli", "load_response_table", "cre_gene", "CRE_LAYER",
           "cortical_layer"]
