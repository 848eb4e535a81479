"""Stimulus sets: ordered, uniquely named images with a content hash, and their loaders."""

from cortexalign.stimuli._loaders import (
    BUNDLED,
    IMAGE_SUFFIXES,
    load_bundled,
    load_folder,
    load_npz,
    load_stimuli,
    read_image,
)
from cortexalign.stimuli._stimulus_set import StimulusSet, check_image

__all__ = ["StimulusSet", "check_image", "load_folder", "load_npz", "load_bundled", "load_stimuli",
           "BUNDLED", "IMAGE_SUFFIXES", "read_image"]
