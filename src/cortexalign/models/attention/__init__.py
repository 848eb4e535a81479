"""Attention maps (fused-attention safe, windowed, pooled) and convolutional maps of vision models.

>>> maps = attention_maps(model.eval(), images_bchw)            # doctest: +SKIP
>>> maps["blocks.2.attn"].shape                                 # (b, gh, gw)  # doctest: +SKIP

Supported attention classes are the keys of ``ATTENTION_HANDLERS``; reductions are ``REDUCTIONS``.
"""

from cortexalign.models.attention._capture import (
    attention_maps,
    capture_attention_maps,
    list_attention_blocks,
    resolve_attention_blocks,
)
from cortexalign.models.attention._conv import CONV_MAPS, conv_maps
from cortexalign.models.attention._handlers import (
    ATTENTION_HANDLERS,
    AttentionHandler,
    CallContext,
    register_handler,
)
from cortexalign.models.attention._layout import QK
from cortexalign.models.attention._reduce import REDUCTIONS

__all__ = [
    "ATTENTION_HANDLERS",
    "AttentionHandler",
    "CONV_MAPS",
    "CallContext",
    "QK",
    "REDUCTIONS",
    "attention_maps",
    "capture_attention_maps",
    "conv_maps",
    "list_attention_blocks",
    "register_handler",
    "resolve_attention_blocks",
]
