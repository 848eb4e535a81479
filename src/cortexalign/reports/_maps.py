"""Attention / conv maps overlaid on a stimulus, beside neuron maps, drawn to an inline PNG."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cortexalign.errors import InputError  # noqa: E402

__all__ = ["MapPanel", "map_panel_png"]


@dataclass
class MapPanel:
    """One row of the map figure: a stimulus, a model map over it, and neuron maps beside it.

    Attributes
    ----------
    title : e.g. ``"SAM ViT-B · blocks.5 · image 12"``.
    image_hw3 : the stimulus, (h, w, 3) floats in [0, 1] or uint8, or (h, w) grey.
    model_map_gh : the model's map on its own grid (g, h'), e.g. the 64 x 64 token grid of an
        attention map or a conv map; stretched over the image, NaN = not defined.
    neuron_maps : label -> (h'', w'') neuron map (e.g. the response-weighted stimulus map of a
        VISp Cux2 neuron), each drawn beside the overlay.
    """

    title: str
    image_hw3: np.ndarray
    model_map_gh: np.ndarray
    neuron_maps: Mapping[str, np.ndarray] = field(default_factory=dict)

    def checked(self) -> MapPanel:
        """The panel with its images validated and normalised; ``InputError`` on a bad image."""
        img = np.asarray(self.image_hw3)
        if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))):
            raise InputError("image_hw3", "an (h, w, 3) RGB or (h, w) grey image",
                             f"shape {img.shape}", "pass one image, channels last")
        if img.dtype == np.uint8:
            img = img.astype(np.float64) / 255.0
        img = np.clip(np.nan_to_num(img.astype(np.float64)), 0.0, 1.0)
        maps = {"model_map_gh": self.model_map_gh,
                **{f"neuron_maps[{k!r}]": v for k, v in self.neuron_maps.items()}}
        for name, m in maps.items():
            m = np.asarray(m)
            if m.ndim != 2 or min(m.shape) < 1 or not np.issubdtype(m.dtype, np.number):
                raise InputError(name, "a 2-D numeric map", f"shape {m.shape}, dtype {m.dtype}",
                                 "pass one (rows, cols) map; average heads or channels first")
        return MapPanel(str(self.title), img, np.asarray(self.model_map_gh, dtype=np.float64),
                        {str(k): np.asarray(v, dtype=np.float64) for k, v in self.neuron_maps.items()})


def map_panel_png(panels: list[MapPanel], dpi: int = 90) -> str:
    """Base64 PNG: one row per panel (stimulus, model map over it, each neuron map)."""
    panels = [p.checked() for p in panels]
    n_cols = 2 + max((len(p.neuron_maps) for p in panels), default=0)
    fig, axes = plt.subplots(len(panels), n_cols, figsize=(2.4 * n_cols, 2.5 * len(panels)),
                             squeeze=False)
    for row, p in zip(axes, panels, strict=True):
        h, w = p.image_hw3.shape[:2]
        cmap = "gray" if p.image_hw3.ndim == 2 else None
        row[0].imshow(p.image_hw3, cmap=cmap)
        row[0].set_title("stimulus", fontsize=8)
        row[1].imshow(p.image_hw3, cmap=cmap)
        row[1].imshow(np.ma.masked_invalid(p.model_map_gh), cmap="inferno", alpha=0.55,
                      extent=(0, w, h, 0), interpolation="bilinear")
        row[1].set_title("model map (overlay)", fontsize=8)
        row[0].set_ylabel(p.title, fontsize=8)
        for ax, (label, m) in zip(row[2:], p.neuron_maps.items(), strict=False):
            ax.imshow(np.ma.masked_invalid(m), cmap="viridis")
            ax.set_title(label, fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            if not ax.images:
                ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()
