"""Fixtures of the neural tests: writers of small Allen files (defined in allen_nwb_files.py)."""

from allen_nwb_files import write_ecephys, write_ophys  # noqa: F401
