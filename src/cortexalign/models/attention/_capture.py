"""Attention maps of any supported vision model, captured inside one forward call.

Mechanism: for every attention module asked for, a forward hook (``with_kwargs=True``) receives the
module's input after the module has run and hands it to the module's handler, which recomputes q,
k and the score bias from the module's own weights; the reduction folds the probabilities in chunks
and keeps only the reduced map. Windowed blocks also get a pre-hook on their parent block that
records the (H, W) grid the block partitions. The forward itself is untouched (fused kernels still
run, no ``fused_attn`` is flipped, no forward is swapped), and every hook is removed in ``finally``,
so the model is exactly as before afterwards, also when the forward raises.

One opt-in shortcut: an attention class with a ``maps_capture`` attribute (cortexalign's own
``SamFusedAttention``) gets it set to True for the call; its forward then keeps q, k and its
attention kernel's row log-sum-exp for its handler, which reads them instead of recomputing
(no second q k projection, and the fused map kernel skips a pass). The flag and anything kept
are cleared in ``finally`` too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.models.attention._handlers import ATTENTION_HANDLERS, CallContext
from cortexalign.models.attention._reduce import BACKENDS, REDUCTIONS, ROLLOUT_MAX_TOKENS

__all__ = ["attention_maps", "capture_attention_maps", "list_attention_blocks",
           "resolve_attention_blocks"]


def _supported_names() -> str:
    return ", ".join(sorted(f"{c.__module__}.{c.__qualname__}" for c in ATTENTION_HANDLERS))


def _looks_like_attention(m: torch.nn.Module) -> bool:
    return "attention" in type(m).__name__.lower() or hasattr(m, "fused_attn")


def _unsupported_error(parameter: str, name: str, m: torch.nn.Module) -> InputError:
    cls = type(m)
    return InputError(parameter, f"an attention module of a supported class ({_supported_names()})",
                      f"{name!r} of class {cls.__module__}.{cls.__qualname__}",
                      "register a handler for this class in cortexalign.models.attention."
                      "ATTENTION_HANDLERS (one function that recomputes q, k and the score bias)")


def list_attention_blocks(module: torch.nn.Module) -> list[str]:
    """Names of the attention modules of ``module`` that maps can be taken from, in model order.

    Raises
    ------
    InputError
        if ``module`` has attention-like modules but none of a supported class (the error names
        their classes and the supported ones).
    """
    if not isinstance(module, torch.nn.Module):
        raise InputError("module", "a torch.nn.Module", type(module).__name__, "pass the model itself")
    names, unsupported = [], []
    for name, m in module.named_modules():
        if type(m) in ATTENTION_HANDLERS:
            names.append(name)
        elif _looks_like_attention(m):
            unsupported.append((name, m))
    if not names and unsupported:
        raise _unsupported_error("module", *unsupported[0])
    return names


def resolve_attention_blocks(module: torch.nn.Module, blocks: Sequence[str] | None,
                    reduction: str) -> dict[str, str]:
    """Map each requested name to an attention module name (requested name -> module name)."""
    available = list_attention_blocks(module)
    if not available:
        raise InputError("module", "a model with attention blocks", f"{type(module).__name__} with "
                         "none", "use conv_maps() on its activations for a convolutional model")
    if blocks is None:
        if reduction != "rollout":
            return {n: n for n in available}
        return {n: n for n in available if _is_global(module.get_submodule(n), module, n)}
    if isinstance(blocks, str) or not blocks:
        raise InputError("blocks", "a non-empty list of block names or None",
                         repr(blocks), f"pass e.g. [{available[0]!r}]")
    modules = dict(module.named_modules())
    out = {}
    for name in blocks:
        if name not in modules:
            raise UnknownNameError("block", name, available)
        if name in available:
            out[name] = name
            continue
        inner = [a for a in available if a.startswith(name + ".") or name == ""]
        if len(inner) == 1:
            out[name] = inner[0]
        elif _looks_like_attention(modules[name]):
            raise _unsupported_error("blocks", name, modules[name])
        else:
            kind = "no attention" if not inner else f"{len(inner)} attention modules"
            raise InputError("blocks", "a block with exactly one attention module",
                             f"{name!r} with {kind}",
                             f"use one of the blocks that have attention: {', '.join(available)}")
    if len(set(out.values())) < len(out):
        raise InputError("blocks", "each attention module named once", repr(list(blocks)),
                         "drop the names that point at the same attention module")
    return out


def _is_global(attn: torch.nn.Module, root: torch.nn.Module, name: str) -> bool:
    """Whether a block attends over the whole grid without pooling its queries (rollout default)."""
    if getattr(attn, "use_mask_unit_attn", False) or getattr(attn, "q_pool", None) is not None:
        return False
    if getattr(attn, "q_stride", 1) > 1:
        return False
    parent = root.get_submodule(name.rsplit(".", 1)[0] if "." in name else "")
    ws = getattr(parent, "window_size", 0)
    if isinstance(ws, tuple):
        return not any(ws)
    return not ws


def attention_maps(module: torch.nn.Module, x_bchw: torch.Tensor, blocks: Sequence[str] | None = None,
                   reduction: str = "received", chunk_size: int | None = None,
                   rollout_max_tokens: int = ROLLOUT_MAX_TOKENS,
                   backend: str = "auto") -> dict[str, torch.Tensor]:
    """Attention maps of the blocks of ``module`` on input ``x_bchw``, from one forward call.

    Parameters
    ----------
    module : a model (or a single block) whose attention classes are in ``ATTENTION_HANDLERS``:
        timm ViT / DeiT / CLIP ViT, SAM ViT (``samvit_*``), SAM 2 Hiera (``sam2_hiera_*``, HieraDet),
        Hiera (``hiera_*``, mask units) and TinyViT (MobileSAM).
        Put it in eval mode first: maps are the probabilities before attention dropout.
    x_bchw : (b, c, H, W) images as the model takes them (or, for a single block, its 4-D input).
    blocks : attention-module names from ``list_attention_blocks`` or names of blocks holding
        exactly one; None: all (for ``rollout``: the global-attention blocks without query pooling).
    reduction : ``"received"`` (default) -> (b, gh, gw) mean over heads of the attention each
        token receives (column mean over the real queries of its window); ``"per_head"`` ->
        (b, h, gh, gw); ``"cls"`` -> (b, gh, gw) CLS query to patches (models with a CLS token);
        ``"rollout"`` -> (b, gh, gw) attention rollout (Abnar & Zuidema 2020) through each block in
        forward order; ``"full"`` -> (g, h, q, k) probabilities, g = b x windows.
        Maps are on each block's key grid with prefix and padding tokens dropped; windowed blocks
        are computed per window and tiled back.
    chunk_size : query rows scored at once; None picks a size bounded at 2**24 probabilities.
    rollout_max_tokens : largest token count for which a windowed block's block-diagonal matrix
        is built for rollout (only when windowed blocks are named in ``blocks``).
    backend : how ``received`` / ``per_head`` maps are computed: ``"auto"`` (default) uses the
        fused Triton kernel on CUDA for blocks without a score bias or with SAM's relative
        positions, and the chunked path otherwise; ``"chunked"`` always chunks; ``"triton"``
        requires the kernel (an error where it cannot run). Other reductions always chunk.

    Returns
    -------
    dict block name -> tensor, in forward order, keyed by the names given (or module names).
    """
    if not isinstance(x_bchw, torch.Tensor) or x_bchw.dim() != 4:
        got = tuple(x_bchw.shape) if isinstance(x_bchw, torch.Tensor) else type(x_bchw).__name__
        raise InputError("x_bchw", "a 4-D tensor (b, c, H, W)", str(got), "add a batch dimension")
    with capture_attention_maps(module, tuple(x_bchw.shape), blocks, reduction, chunk_size,
                                rollout_max_tokens, backend) as out, torch.inference_mode():
        module(x_bchw)
    return out


@contextlib.contextmanager
def capture_attention_maps(module: torch.nn.Module, input_shape: Sequence[int],
                           blocks: Sequence[str] | None = None, reduction: str = "received",
                           chunk_size: int | None = None,
                           rollout_max_tokens: int = ROLLOUT_MAX_TOKENS,
                           backend: str = "auto") -> Iterator[dict[str, torch.Tensor]]:
    """The hooks of :func:`attention_maps` around a forward call the caller makes.

    Yields the dict that fills with each block's map as the block runs; on exit every hook is
    removed and, if the forward ran to the end, a block that never ran raises. This lets another
    capture share the forward: ``with capture_attention_maps(m, x.shape, blocks) as maps:
    acts = adapter.forward_layers(x, layers)`` gives both from one pass (the forward must reach
    the last block: ask ``forward_layers`` for the block too, so it does not stop before it).

    Parameters
    ----------
    module : as in :func:`attention_maps`; input_shape : the (b, c, H, W) shape of the input
        the forward will get. Other parameters as in :func:`attention_maps` (checked here).
    """
    if reduction not in REDUCTIONS:
        raise UnknownNameError("attention reduction", reduction, REDUCTIONS)
    if backend not in BACKENDS:
        raise InputError("backend", f"one of {BACKENDS}", repr(backend),
                         "use 'auto' unless you are comparing the two paths")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise InputError("chunk_size", "a positive int or None", repr(chunk_size), "pass e.g. 256")
    batch, hw = int(input_shape[0]), tuple(int(v) for v in input_shape[-2:])
    wanted = resolve_attention_blocks(module, blocks, reduction)
    if not wanted:
        raise InputError("blocks", "at least one global-attention block for rollout",
                         "a model whose blocks are all windowed", "name the windowed blocks in "
                         "blocks= to roll out over block-diagonal matrices")
    by_module = {m: given for given, m in wanted.items()}
    fn = REDUCTIONS[reduction]
    state: dict = {"rollout_max_tokens": rollout_max_tokens, "backend": backend}
    out: dict[str, torch.Tensor] = {}
    grids: dict[str, tuple[int, int]] = {}
    handles = []
    captured: list[torch.nn.Module] = []

    def make_hook(name: str):
        handler = ATTENTION_HANDLERS[type(module.get_submodule(name))]

        def hook(mod, args, kwargs, output):
            ctx = CallContext(module, name, batch, hw, grids)
            qk = handler.qk(mod, args, kwargs, ctx)
            qk.check(batch)
            out[by_module[name]] = fn(qk, batch, chunk_size, state)

        return hook, handler

    def make_pre_hook(name: str):
        def pre_hook(mod, args):
            grids[name] = tuple(args[0].shape[1:3])

        return pre_hook

    try:
        for name in by_module:
            hook, handler = make_hook(name)
            attn = module.get_submodule(name)
            handles.append(attn.register_forward_hook(hook, with_kwargs=True))
            if hasattr(type(attn), "maps_capture"):
                attn.maps_capture = True
                captured.append(attn)
            if handler.parent_grid:
                parent = module.get_submodule(name.rsplit(".", 1)[0] if "." in name else "")
                handles.append(parent.register_forward_pre_hook(make_pre_hook(name)))
        yield out
    finally:
        for handle in handles:
            handle.remove()
        for attn in captured:
            del attn.maps_capture  # back to the class default (False)
            attn.__dict__.pop("_maps_stash", None)
    missing = [given for given in wanted if given not in out]
    if missing:
        raise InputError("blocks", "blocks that run in the model's forward pass",
                         f"{missing} never ran", "name blocks used by module.forward")
