"""What a handler hands to the reductions: queries, keys, score bias and where each token sits.

Every supported attention module is described the same way, whatever its tokenisation:

- ``q_ghqd`` / ``k_ghkd``: scaled queries and keys of ``g`` attention groups (``g = b * w`` with
  ``w`` windows per image, image-major, as every windowed timm block orders them; ``w = 1`` for
  global attention), ``h`` heads, ``q``/``k`` tokens, ``d`` channels.
- ``bias``: additive score terms (relative positions, learned biases, masks), added in place to the
  scores of the query rows asked for, so no (g, h, q, k) tensor of them is ever made.
- ``key_tok_wk`` / ``query_tok_wq``: for each window and token, its index in the *token space* of
  the image: ``0 .. p-1`` for the ``p`` prefix tokens (CLS, registers), then ``p + row * gw + col``
  for grid position (row, col); ``-1`` for padding tokens that the block discards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch

__all__ = ["QK", "window_tokens", "grid_tokens"]

BiasFn = Callable[[slice, torch.Tensor], None]


@dataclass
class QK:
    """Queries, keys and token placement of one attention call (see the module docstring).

    Attributes
    ----------
    q_ghqd : (g, h, q, d) queries, already multiplied by the module's scale.
    k_ghkd : (g, h, k, d) keys.
    bias : ``bias(rows, scores_ghck)`` adds the score terms of query ``rows`` (all groups and
        heads) to ``scores_ghck`` in place, or None.
    key_tok_wk : (w, k) long, token-space index of each key in each window; -1 for padding.
    query_tok_wq : (w, q) long, token-space index of each query (in the *query* grid); -1 padding.
    grid_hw : (gh, gw) the key grid (the block's input grid).
    query_grid_hw : (gh', gw') the query grid; differs from ``grid_hw`` under query pooling.
    num_prefix : prefix tokens before the grid in token space (global attention only).
    has_cls : whether prefix token 0 is a CLS token.
    rel_pos : ``(rel_h (g, h, q, kh), rel_w (g, h, q, kw))`` when ``bias`` is exactly SAM's
        decomposed relative-position bias over a (kh, kw) key window, so a fused kernel can gather
        ``rel_h[q, k // kw] + rel_w[q, k % kw]`` itself instead of calling ``bias``; else None.
    lse : (g, h, >= q) float32 natural log-sum-exp of each query row's scores (scaled, bias
        added), when the module's own attention kernel returned it (rows may be padded past q);
        the fused received-map kernel then skips its first pass. None: computed where needed.
    """

    q_ghqd: torch.Tensor
    k_ghkd: torch.Tensor
    bias: BiasFn | None
    key_tok_wk: torch.Tensor
    query_tok_wq: torch.Tensor
    grid_hw: tuple[int, int]
    query_grid_hw: tuple[int, int]
    num_prefix: int = 0
    has_cls: bool = False
    rel_pos: tuple[torch.Tensor, torch.Tensor] | None = None
    lse: torch.Tensor | None = None

    @property
    def windowed(self) -> bool:
        """Whether the keys are windowed (several windows, or padded key tokens)."""
        return self.key_tok_wk.shape[0] > 1 or bool((self.key_tok_wk < 0).any())

    @property
    def num_tokens(self) -> int:
        """Size of the token space: prefix tokens plus the key grid."""
        return self.num_prefix + self.grid_hw[0] * self.grid_hw[1]

    def check(self, batch: int) -> None:
        """Assert the query/key shapes agree with each other and with ``batch`` x windows."""
        g, h, tq, d = self.q_ghqd.shape
        w = self.key_tok_wk.shape[0]
        assert self.k_ghkd.shape[:2] == (g, h) and self.k_ghkd.shape[3] == d, (
            f"q {tuple(self.q_ghqd.shape)} and k {tuple(self.k_ghkd.shape)} disagree")
        assert g == batch * w, f"{g} attention groups is not batch {batch} x {w} windows"
        assert self.key_tok_wk.shape[1] == self.k_ghkd.shape[2], "key placement length"
        assert self.query_tok_wq.shape == (w, tq), "query placement shape"


@lru_cache(maxsize=64)
def window_tokens(grid_hw: tuple[int, int], win_hw: tuple[int, int], n_win_hw: tuple[int, int],
                  num_prefix: int = 0, device: torch.device | None = None) -> torch.Tensor:
    """Token-space index of every token of every window, -1 where the window is padding.

    Windows are row-major over the padded grid and tokens row-major inside a window, which is the
    order of ``window_partition`` in timm's SAM, SAM 2 (HieraDet) and TinyViT blocks. Built on
    ``device`` and cached (treat the result as read-only), so repeated calls copy nothing from
    the host.

    Returns
    -------
    tok_wt : (n_win_h * n_win_w, win_h * win_w) long.
    """
    (gh, gw), (wh, ww), (nh, nw) = grid_hw, win_hw, n_win_hw
    def ar(n: int) -> torch.Tensor:
        return torch.arange(n, device=device)

    rows = ar(nh)[:, None] * wh + ar(wh)[None, :]  # (nh, wh)
    cols = ar(nw)[:, None] * ww + ar(ww)[None, :]  # (nw, ww)
    r = rows[:, None, :, None].expand(nh, nw, wh, ww)
    c = cols[None, :, None, :].expand(nh, nw, wh, ww)
    tok = num_prefix + r * gw + c
    tok = torch.where((r < gh) & (c < gw), tok, torch.full_like(tok, -1))
    return tok.reshape(nh * nw, wh * ww)


@lru_cache(maxsize=64)
def grid_tokens(grid_hw: tuple[int, int], num_prefix: int = 0,
                device: torch.device | None = None) -> torch.Tensor:
    """Token-space indices of a global attention over prefix + grid tokens: ``(1, p + gh * gw)``.

    Built on ``device`` and cached (read-only), like ``window_tokens``."""
    return torch.arange(num_prefix + grid_hw[0] * grid_hw[1], device=device)[None, :]
