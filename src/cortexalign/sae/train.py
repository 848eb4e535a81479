"""Streaming SAE training from an iterable of (N, d) activation chunks.

``train_sae`` never holds more than one chunk plus one batch of tokens: each chunk is copied to the
device once, shuffled there by an index permutation (each batch is gathered through its slice of
the permutation; the permuted chunk is never built) and cut into batches of ``config.batch_size``
tokens (the remainder carries over to the next chunk). The device is chosen at the edge
(``device=None`` picks CUDA when present). The training step reads nothing back to the host: the
dead-latent counters are updated in place on the device, and the loss is converted to a float only
every ``log_every`` steps; the only host syncs are one per chunk (its copy and finiteness check),
one per ``dead_window`` tokens (the dead-latent check) and one per logged step.

On the CPU the seed's SAE (``relu_tied`` with the ``seed`` objective) trains through a fused
step (``sae.fused``): the same loss with a hand-written backward that runs 5 GEMMs where
autograd runs 6 and, once the codes are sparse, restricts all but the encoder's product to the
active latents.

Dead latents: a latent that has not fired on the last ``config.dead_window`` training tokens is
dead. Every ``dead_window`` tokens the dead set is counted and, if ``config.resample_dead``, each
dead latent is re-initialised (after Bricken et al. 2023, "Towards monosemanticity"): a token of
the current batch is drawn with probability proportional to its squared reconstruction loss, the
latent's decoder direction becomes that token's centred input (c x - b_pre) at unit norm, its encoder
row the same direction scaled to 0.2 x the mean norm of the live encoder rows, its bias 0, and the
AdamW moments of those rows are reset.

Checkpoints: ``save_sae`` writes ``sae.safetensors`` and ``config.json`` beside it; ``load_sae``
refuses a checkpoint whose config differs from the requested one, naming the differing fields.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cortexalign import __version__
from cortexalign.device import resolve_device
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.sae.config import SAEConfig
from cortexalign.sae.fused import FUSED_LOSSES
from cortexalign.sae.modules import (
    SAE_ARCHITECTURES,
    SparseAutoencoder,
    build_sae,
    resolved_objective,
)
from cortexalign.sae.objectives import (
    MAX_ACTIVE_FRACTION,
    OBJECTIVES,
    MetricAccumulator,
    SAEMetrics,
)

__all__ = ["TrainedSAE", "train_sae", "evaluate_sae", "save_sae", "load_sae", "warn_if_dense",
           "DenseCodeWarning"]

WEIGHTS_FILE, CONFIG_FILE = "sae.safetensors", "config.json"


@dataclass
class TrainedSAE:
    """The result of ``train_sae``.

    Attributes
    ----------
    sae : the trained module (on the training device, in eval mode).
    config : its ``SAEConfig``.
    n_tokens, n_steps : tokens seen and optimiser steps taken.
    n_resampled : dead latents re-initialised over training.
    dead_fraction : fraction of latents dead at the end (no firing over the last window).
    history : one dict per logged step (``step``, ``tokens``, ``loss``, ``nmse``[, ``l1``]).
    """

    sae: SparseAutoencoder
    config: SAEConfig
    n_tokens: int = 0
    n_steps: int = 0
    n_resampled: int = 0
    dead_fraction: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def _check_chunk(chunk: Any, d_in: int, device: torch.device) -> torch.Tensor:
    """The chunk as a float32 tensor on ``device`` (one host-to-device copy), shape and values checked.

    Finiteness is checked on the device with one min/max reduction (NaN and +-Inf both propagate
    into it), so the host does not make a pass over the chunk.
    """
    t = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.asarray(chunk))
    if t.ndim != 2 or t.shape[1] != d_in:
        raise InputError("chunks", f"(N, {d_in}) activation chunks (config.d_in = {d_in})",
                         f"a chunk of shape {tuple(t.shape)}",
                         "flatten tokens to (N, d) (see sae.stream) and set d_in to their width")
    t = t.to(device).float()  # half-precision chunks cross to the device at half the bytes
    if t.numel() and not bool(torch.isfinite(torch.stack(torch.aminmax(t))).all()):
        raise InputError("chunks", "finite activations", "a chunk with NaN/Inf values",
                         "check the feature extraction (precision, model weights)")
    return t


def _batches(chunks: Iterable[Any], config: SAEConfig, gen: torch.Generator, device: torch.device):
    """Yield shuffled (batch_size, d) batches on ``device`` from the chunk stream; the tail is dropped.

    The tokens come out in the order of ``cat([rest, chunk[perm]])`` cut into batches (``perm`` a
    ``randperm`` of each chunk drawn from ``gen``), but the permuted chunk is never materialised:
    each batch is gathered on the device from the chunk through its slice of ``perm``, and only
    the < batch_size leftover tokens are carried over to the next chunk.
    """
    bs = config.batch_size
    rest = torch.empty(0, config.d_in, device=device)
    for chunk in chunks:
        t = _check_chunk(chunk, config.d_in, device)
        perm = torch.randperm(t.shape[0], generator=gen).to(device)
        start = 0
        if rest.shape[0]:  # the first batch completes the leftover of the previous chunk
            need = bs - rest.shape[0]
            head = t.index_select(0, perm[:need])
            if head.shape[0] < need:  # this chunk is too short to complete a batch
                rest = torch.cat([rest, head])
                continue
            yield torch.cat([rest, head])
            start = need
        n_full = start + (t.shape[0] - start) // bs * bs
        for s0 in range(start, n_full, bs):
            yield t.index_select(0, perm[s0:s0 + bs])
        rest = t.index_select(0, perm[n_full:])


@torch.no_grad()
def _resample(sae: SparseAutoencoder, opt: torch.optim.Optimizer, dead_k: torch.Tensor,
              x_bd: torch.Tensor, gen: torch.Generator) -> int:
    idx = dead_k.nonzero().flatten()
    if idx.numel() == 0:
        return 0
    xhat_bd, _ = sae(x_bd)
    weight_b = (xhat_bd - x_bd).pow(2).sum(-1).pow(2).double().cpu()
    if not torch.isfinite(weight_b).all() or weight_b.sum() <= 0:
        weight_b = torch.ones_like(weight_b)
    pick = torch.multinomial(weight_b, idx.numel(), replacement=True, generator=gen)
    dirs = sae.normalise(x_bd[pick.to(x_bd.device)]) - sae.b_pre
    dirs = dirs / dirs.norm(dim=1, keepdim=True).clamp_min(1e-12)
    alive = ~dead_k
    norms = sae.encoder_kd().norm(dim=1)
    enc_scale = 0.2 * float(norms[alive].mean()) if alive.any() else 0.2
    sae.reinit_latents(idx, dirs, enc_scale)
    params = dict(sae.named_parameters())
    for name in sae.parameter_groups():
        state = opt.state.get(params[name], {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][idx] = 0.0
    return int(idx.numel())


def _check_init(init: Any, config: SAEConfig) -> None:
    want = SAE_ARCHITECTURES.get(config.architecture)
    if type(init) is not want or (init.d_in, init.d_sae) != (config.d_in, config.d_sae):
        got = (f"{type(init).__name__} with d_in={getattr(init, 'd_in', '?')}, "
               f"{getattr(init, 'd_sae', '?')} latents")
        raise InputError("init", f"a {want.__name__} with d_in={config.d_in} and {config.d_sae} "
                         "latents (config's architecture and sizes)", got,
                         "pass an SAE built from the same architecture and sizes, or init=None")


def train_sae(chunks: Iterable[Any], config: SAEConfig, *, device: str | torch.device | None = None,
              max_tokens: int | None = None, log_every: int = 100,
              checkpoint: str | os.PathLike[str] | None = None,
              callback: Callable[[dict[str, float]], None] | None = None,
              init: SparseAutoencoder | None = None) -> TrainedSAE:
    """Train one SAE on a stream of activation chunks.

    Parameters
    ----------
    chunks : iterable of (N, d_in) arrays or tensors (any N; e.g. ``sae.stream.cache_token_chunks``).
    config : the ``SAEConfig``.
    device : ``None``/``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:0"``...
    max_tokens : stop after this many training tokens (None: when the stream ends).
    log_every : record the loss every this many steps in ``history`` (and call ``callback``).
    checkpoint : a directory to save the trained SAE to (``save_sae``).
    init : continue from this SAE's parameters (copied; its input scale and pre-bias are kept
        instead of being set from the first batch) with a fresh optimiser; it must have
        ``config``'s architecture and sizes. The lambda warm-up starts again unless
        ``config.l1_warmup_steps`` is 0. None: a fresh SAE seeded by ``config.seed``.

    Returns
    -------
    TrainedSAE
    """
    if config.architecture not in SAE_ARCHITECTURES:
        raise UnknownNameError("SAE architecture", config.architecture, SAE_ARCHITECTURES.names())
    objective_name = resolved_objective(config)
    if objective_name not in OBJECTIVES:
        raise UnknownNameError("SAE objective", objective_name, list(OBJECTIVES))
    objective = OBJECTIVES[objective_name]
    dev = resolve_device(device)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    sae = build_sae(config)
    if init is not None:
        _check_init(init, config)
        sae.load_state_dict(init.state_dict())
    sae = sae.to(dev).train()
    opt = torch.optim.AdamW(sae.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    since_fired_k = torch.zeros(config.d_sae, dtype=torch.long, device=dev)
    use_amp = config.autocast_bf16 and dev.type == "cuda"
    out = TrainedSAE(sae=sae, config=config)
    next_check = config.dead_window
    fused = FUSED_LOSSES.get((config.architecture, objective_name)) if dev.type == "cpu" else None
    autocast = (functools.partial(torch.autocast, device_type=dev.type, dtype=torch.bfloat16)
                if use_amp else contextlib.nullcontext)
    for x_bd in _batches(chunks, config, gen, dev):
        if max_tokens is not None and out.n_tokens >= max_tokens:
            break
        if out.n_steps == 0 and init is None:  # scale the inputs, start the pre-bias at the data mean
            with torch.no_grad():
                if config.normalize_inputs:
                    sae.set_input_scale(x_bd)
                sae.b_pre.copy_(sae.normalise(x_bd).mean(0))
        warm = min(1.0, (out.n_steps + 1) / config.l1_warmup_steps) if config.l1_warmup_steps else 1.0
        if fused is not None:  # the same loss, with a hand-written (sparse when z is) backward
            loss, parts, z_bk = fused(sae, x_bd, config.l1_coef * warm)
        else:
            with autocast():
                xhat_bd, z_bk = sae(x_bd)
            # the loss in the SAE's normalised units (NMSE is scale-free; the L1 term's ||x|| is not)
            loss, parts = objective(sae.normalise(x_bd), sae.normalise(xhat_bd), z_bk,
                                    config.l1_coef * warm)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sae.constrain()
        out.n_steps += 1
        out.n_tokens += x_bd.shape[0]
        with torch.no_grad():  # in place on the device: no host sync (a mask index would sync)
            since_fired_k += x_bd.shape[0]
            since_fired_k.masked_fill_(z_bk.amax(0) > 0, 0)  # fired <=> max over b > 0
        if out.n_tokens >= next_check:
            next_check += config.dead_window
            dead_k = since_fired_k >= config.dead_window
            if config.resample_dead and dead_k.any():
                out.n_resampled += _resample(sae, opt, dead_k, x_bd, gen)
                since_fired_k.masked_fill_(dead_k, 0)
        if out.n_steps % log_every == 0:
            rec = {"step": out.n_steps, "tokens": out.n_tokens,
                   **{k: float(v) for k, v in parts.items()}}
            out.history.append(rec)
            if callback is not None:
                callback(rec)
    if out.n_steps == 0:
        raise InputError("chunks", f"at least batch_size = {config.batch_size} tokens",
                         "a stream with fewer tokens", "pass more tokens or lower batch_size")
    out.dead_fraction = float((since_fired_k >= min(config.dead_window, out.n_tokens))
                              .double().mean())
    sae.eval()
    if checkpoint is not None:
        save_sae(sae, checkpoint, extra={"n_tokens": out.n_tokens, "n_steps": out.n_steps})
    return out


@torch.no_grad()
def evaluate_sae(sae: SparseAutoencoder, chunks: Iterable[Any], device: str | torch.device |
                 None = None, batch_size: int = 8192) -> SAEMetrics:
    """Normalised MSE, explained variance, L0 and dead fraction over a stream of (N, d) chunks."""
    dev = resolve_device(device)
    sae = sae.to(dev).eval()
    acc = MetricAccumulator(sae.d_in, sae.d_sae, dev)
    for chunk in chunks:
        t = _check_chunk(chunk, sae.d_in, dev)
        for start in range(0, t.shape[0], batch_size):
            x_bd = t[start:start + batch_size]
            xhat_bd, z_bk = sae(x_bd)
            acc.update(x_bd, xhat_bd, z_bk)
    return acc.result()


def save_sae(sae: SparseAutoencoder, directory: str | os.PathLike[str],
             extra: dict[str, Any] | None = None) -> Path:
    """Write ``sae.safetensors`` and ``config.json`` (config + ``extra`` metadata) to a directory.

    Each file is written to a temp name and renamed into place; the weights go first, so a
    ``config.json`` always describes complete weights.
    """
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in sae.state_dict().items()}
    tmp = d / f".{WEIGHTS_FILE}.tmp-{os.getpid()}"
    save_file(tensors, str(tmp))
    os.replace(tmp, d / WEIGHTS_FILE)
    blob = {"config": sae.config.model_dump(), "cortexalign_version": __version__,
            **(extra or {})}
    tmp = d / f".{CONFIG_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(blob, indent=1, sort_keys=True))
    os.replace(tmp, d / CONFIG_FILE)
    return d


def load_sae(directory: str | os.PathLike[str], config: SAEConfig | None = None,
             device: str | torch.device | None = "cpu") -> SparseAutoencoder:
    """Load an SAE saved by ``save_sae``.

    Parameters
    ----------
    directory : the checkpoint directory.
    config : the config the caller expects; a checkpoint trained with another config raises
        ``InputError`` naming each differing field (None accepts the saved config).
    device : where to put the module.
    """
    from safetensors.torch import load_file

    d = Path(directory)
    if not (d / CONFIG_FILE).is_file() or not (d / WEIGHTS_FILE).is_file():
        raise InputError("directory", f"an SAE checkpoint directory with {WEIGHTS_FILE} and "
                         f"{CONFIG_FILE}", f"{str(d)!r} ({'missing' if not d.exists() else 'incomplete'})",
                         "train with train_sae(..., checkpoint=DIR) or point at the right folder")
    saved = SAEConfig.from_dict(json.loads((d / CONFIG_FILE).read_text())["config"])
    if config is not None and config != saved:
        diffs = config.differences(saved)
        listed = "; ".join(f"{k}: requested {a!r}, checkpoint {b!r}" for k, (a, b) in diffs.items())
        raise InputError("config", "the config the checkpoint was trained with",
                         f"differing fields: {listed}",
                         f"request the checkpoint's config or train a new SAE (checkpoint: {d})")
    sae = build_sae(saved)
    state = load_file(str(d / WEIGHTS_FILE))
    missing = set(sae.state_dict()) ^ set(state)
    if missing:
        raise InputError("directory", "weights matching the saved config",
                         f"tensors that differ by name: {sorted(missing)[:5]}",
                         "the checkpoint is corrupt or from another version: retrain it")
    sae.load_state_dict(state)
    return sae.to(resolve_device(device)).eval()


class DenseCodeWarning(UserWarning):
    """A trained SAE whose tokens use a large share of its latents: not a sparse dictionary."""


def warn_if_dense(metrics: SAEMetrics, name: str = "SAE",
                  max_active_fraction: float = MAX_ACTIVE_FRACTION) -> bool:
    """Warn (``DenseCodeWarning``) when ``metrics.active_fraction`` exceeds
    ``max_active_fraction``; returns whether it did."""
    if not metrics.active_fraction > max_active_fraction:
        return False
    warnings.warn(f"{name}: tokens use {metrics.l0:.1f} latents on average, "
                  f"{metrics.active_fraction:.1%} of the dictionary (more than "
                  f"{max_active_fraction:.0%}): not sparse; {metrics.dense_fraction:.1%} of latents "
                  "are dense (fire on >10% of tokens). Train longer, raise l1_coef, or use "
                  "architecture topk/batch_topk with a small k", DenseCodeWarning, stacklevel=2)
    return True
