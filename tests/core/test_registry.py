from __future__ import annotations

import pytest

from cortexalign.errors import UnknownNameError
from cortexalign.registry import Registry


def test_register_and_lookup_with_prefix():
    reg = Registry("widget")

    @reg.register("alpha", citation="x")
    def alpha():
        """Alpha widget."""

    @reg.register_prefix("ext")
    def ext(rest):
        return rest

    assert reg.get("alpha") is alpha
    entry, rest = reg.resolve("ext:foo/bar")
    assert entry.obj("x") == "x" and rest == "foo/bar"
    assert "alpha" in reg and "ext:anything" in reg and "beta" not in reg
    assert reg.entry("alpha").description == "Alpha widget."


def test_unknown_name_lists_close_matches():
    reg = Registry("model")
    for name in ["efficientnet_lite0", "gabor_v1", "resnet50"]:
        reg.add(name, object())
    with pytest.raises(UnknownNameError) as err:
        reg.get("efficientnet_lite")
    assert "Did you mean 'efficientnet_lite0'" in str(err.value)
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)


def test_duplicate_registration_is_an_error():
    reg = Registry("metric")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="twice"):
        reg.add("a", 2)
