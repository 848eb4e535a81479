from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _features_standin import TinyAdapter, make_stimuli  # noqa: E402

from cortexalign.stimuli import StimulusSet  # noqa: E402


@pytest.fixture
def stimuli() -> StimulusSet:
    return make_stimuli()


@pytest.fixture
def adapter() -> TinyAdapter:
    return TinyAdapter()
