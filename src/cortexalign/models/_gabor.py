"""A Gabor filter bank model of primary visual cortex (V1), needing no weights.

Simple cells are half-rectified linear Gabor responses; complex cells are the quadrature energy
of an even/odd pair (Adelson & Bergen, 1985); a coarse spatial average pools the complex cells.
Filters follow Jones & Palmer (1987) / Petkov (1995): for orientation theta, spatial frequency f
(cycles/pixel), phase phi and aspect ratio gamma, with x' = x cos(theta) + y sin(theta),
y' = -x sin(theta) + y cos(theta) (x right, y down, in pixels from the kernel centre)::

    g(x, y) = exp(-(x'^2 + gamma^2 y'^2) / (2 sigma^2)) * cos(2 pi f x' + phi)
    sigma   = sqrt(ln 2 / 2) / (pi f) * (2^b + 1) / (2^b - 1)       (b: bandwidth in octaves)

phi = 0 (even) and -pi/2 (odd); each filter then has its mean removed (no response to uniform
luminance) and unit L2 norm. theta is the direction of the wave vector: a grating
cos(2 pi f (x cos(theta) + y sin(theta))) drives the theta filters most.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cortexalign.errors import InputError
from cortexalign.models._base import ModelAdapter
from cortexalign.models._hooks import seeded
from cortexalign.models._preprocess import Preprocess
from cortexalign.models._registry import MODELS, LoadSpec, options_tag
from cortexalign.models._weights import load_state_dict_checked, read_state_dict

__all__ = ["GaborConfig", "GaborV1", "gabor_kernel", "build_gabor_v1"]

# ITU-R BT.601 luma weights
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class GaborConfig:
    """Configuration of the Gabor V1 bank.

    Parameters
    ----------
    image_size : side of the square input, in pixels.
    image_deg : visual angle the image spans, in degrees; ``None`` means ``frequencies`` are
        given in cycles/pixel instead of cycles/degree.
    frequencies : spatial frequencies, cycles/degree (or cycles/pixel, see ``image_deg``);
        each must stay below the Nyquist limit of 0.5 cycles/pixel.
    n_orientations : orientations evenly spaced over [0, pi).
    bandwidth : spatial-frequency bandwidth in octaves (sets the envelope sigma).
    aspect_ratio : gamma, the envelope's width across / along the stripes (0.5: elongated).
    truncate : the kernel extends to ``truncate`` sigma on each side.
    pool_grid : the ``pooled`` layer averages complex cells on a pool_grid x pool_grid grid.
    """

    image_size: int = 224
    image_deg: float | None = 8.0
    frequencies: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    n_orientations: int = 8
    bandwidth: float = 1.0
    aspect_ratio: float = 0.5
    truncate: float = 3.0
    pool_grid: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "frequencies", tuple(float(f) for f in self.frequencies))
        if self.image_size < 1 or self.n_orientations < 1 or self.pool_grid < 1:
            raise InputError("image_size/n_orientations/pool_grid", "positive integers",
                             f"{self.image_size}/{self.n_orientations}/{self.pool_grid}",
                             "pass positive values")
        if self.image_deg is not None and self.image_deg <= 0:
            raise InputError("image_deg", "a positive visual angle or None", repr(self.image_deg),
                             "pass the degrees the image spans, e.g. 8.0")
        if not self.frequencies or min(self.frequencies) <= 0:
            raise InputError("frequencies", "positive spatial frequencies", repr(self.frequencies),
                             "pass e.g. (1.0, 2.0, 4.0, 8.0) cycles/degree")
        too_high = [f for f in self.frequencies_cpp() if f >= 0.5]
        if too_high:
            raise InputError("frequencies", "below 0.5 cycles/pixel (the Nyquist limit)",
                             f"{too_high} cycles/pixel",
                             "lower the frequencies or raise image_size / lower image_deg")
        if self.bandwidth <= 0 or self.aspect_ratio <= 0 or self.truncate <= 0:
            raise InputError("bandwidth/aspect_ratio/truncate", "positive values",
                             f"{self.bandwidth}/{self.aspect_ratio}/{self.truncate}",
                             "use e.g. 1.0 / 0.5 / 3.0")

    def frequencies_cpp(self) -> tuple[float, ...]:
        """Spatial frequencies in cycles/pixel."""
        if self.image_deg is None:
            return self.frequencies
        return tuple(f * self.image_deg / self.image_size for f in self.frequencies)

    def orientations(self) -> tuple[float, ...]:
        """Orientations in radians, k pi / n_orientations."""
        return tuple(k * math.pi / self.n_orientations for k in range(self.n_orientations))

    def sigma(self, freq_cpp: float) -> float:
        """Envelope sigma (pixels) for a frequency in cycles/pixel and the configured bandwidth."""
        b = 2.0 ** self.bandwidth
        return math.sqrt(math.log(2) / 2) / (math.pi * freq_cpp) * (b + 1) / (b - 1)


def gabor_kernel(freq_cpp: float, theta: float, phase: float, sigma: float, aspect_ratio: float,
                 half: int) -> torch.Tensor:
    """One zero-mean, unit-norm Gabor kernel of shape (2 half + 1, 2 half + 1), float64."""
    coords = torch.arange(-half, half + 1, dtype=torch.float64)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    xr = x * math.cos(theta) + y * math.sin(theta)
    yr = -x * math.sin(theta) + y * math.cos(theta)
    envelope = torch.exp(-(xr**2 + aspect_ratio**2 * yr**2) / (2 * sigma**2))
    k_hw = envelope * torch.cos(2 * math.pi * freq_cpp * xr + phase)
    k_hw = k_hw - k_hw.mean()
    return k_hw / k_hw.norm()


FFT_KERNEL_MIN = 23  # kernels at least this wide are applied by FFT (same result, far fewer flops)


def conv_same(x_b1hw: torch.Tensor, w_c1kk: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, w, padding="same")`` (cross-correlation, zero padding) for odd square kernels.

    Large kernels (the low-frequency Gabors are ~100 px wide at 224 px) go through a float64 FFT:
    O(HW log HW) per channel instead of O(HW k^2), equal to the direct convolution to ~1e-6.
    """
    k = w_c1kk.shape[-1]
    if k < FFT_KERNEL_MIN:
        return F.conv2d(x_b1hw, w_c1kk.to(x_b1hw.dtype), padding="same")
    h, w = x_b1hw.shape[-2:]
    half = k // 2
    size = (h + k - 1, w + k - 1)
    x64 = x_b1hw.to(torch.float64)
    kern = torch.flip(w_c1kk.to(torch.float64), dims=(-2, -1))[:, 0]  # correlation -> convolution
    full = torch.fft.irfft2(torch.fft.rfft2(x64, s=size) * torch.fft.rfft2(kern, s=size), s=size)
    return full[..., half:half + h, half:half + w].to(x_b1hw.dtype)


class Grayscale(nn.Module):
    """(b, 3, h, w) RGB -> (b, 1, h, w) luminance (BT.601 weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weight", torch.tensor(_LUMA).view(1, 3, 1, 1), persistent=False)

    def forward(self, x_b3hw: torch.Tensor) -> torch.Tensor:
        return (x_b3hw * self.weight.to(x_b3hw.dtype)).sum(1, keepdim=True)


class QuadratureEnergy(nn.Module):
    """(b, 2 c, h, w) with (even, odd) pairs adjacent -> (b, c, h, w) sqrt(even^2 + odd^2)."""

    def forward(self, lin_bchw: torch.Tensor) -> torch.Tensor:
        even, odd = lin_bchw[:, 0::2], lin_bchw[:, 1::2]
        return torch.sqrt(even * even + odd * odd)


class GaborV1(nn.Module):
    """Gabor V1 model: ``gray`` -> ``banks`` (one conv per frequency) -> ``simple`` / ``complex`` -> ``pooled``.

    Channels: ``simple`` has F * O * 2 channels ordered (frequency, orientation, phase);
    ``complex`` has F * O ordered (frequency, orientation); ``pooled`` is ``complex`` averaged on a
    ``pool_grid`` x ``pool_grid`` grid. Filters are fixed (no gradients) but live in the state_dict,
    so the weights digest tells the designed bank from its random control.
    """

    def __init__(self, config: GaborConfig = GaborConfig()):
        super().__init__()
        self.config = config
        self.gray = Grayscale()
        self.banks = nn.ModuleList()
        for f in config.frequencies_cpp():
            sigma = config.sigma(f)
            half = max(1, math.ceil(config.truncate * sigma))
            kernels = [gabor_kernel(f, theta, phase, sigma, config.aspect_ratio, half)
                       for theta in config.orientations() for phase in (0.0, -math.pi / 2)]
            conv = nn.Conv2d(1, len(kernels), 2 * half + 1, padding="same", bias=False)
            conv.weight.data.copy_(torch.stack(kernels)[:, None].float())
            conv.weight.requires_grad_(False)
            self.banks.append(conv)
        self.simple = nn.ReLU()
        self.complex = QuadratureEnergy()
        self.pooled = nn.AdaptiveAvgPool2d(config.pool_grid)

    def randomize_(self, seed: int) -> GaborV1:
        """Replace every filter by seeded white noise with zero mean and unit norm (the control)."""
        with seeded(seed), torch.no_grad():
            for conv in self.banks:
                w = torch.randn(conv.weight.shape, dtype=torch.float64)
                w = w - w.mean(dim=(2, 3), keepdim=True)
                conv.weight.copy_(w / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
        return self

    def linear(self, x_b3hw: torch.Tensor) -> torch.Tensor:
        """(b, 3, h, w) -> (b, F * O * 2, h, w) linear filter responses."""
        gray_b1hw = self.gray(x_b3hw)
        return torch.cat([conv_same(gray_b1hw, conv.weight) for conv in self.banks], dim=1)

    def forward(self, x_b3hw: torch.Tensor) -> torch.Tensor:
        """Complex-cell responses pooled on the output grid (the ``simple`` layer runs for its hook)."""
        lin_bchw = self.linear(x_b3hw)
        self.simple(lin_bchw)  # run for its hook: the layer "simple"
        return self.pooled(self.complex(lin_bchw))


@MODELS.register(
    "gabor_v1",
    description="Gabor filter bank V1 model: simple, complex (quadrature energy) and pooled cells",
    layers="simple, complex, pooled",
    weights="none (designed filters; untrained=True gives seeded random filters of the same size)",
    tiny={"image_size": 32, "image_deg": None, "frequencies": (0.1, 0.25), "n_orientations": 4},
)
def build_gabor_v1(spec: LoadSpec, **kwargs: Any) -> ModelAdapter:
    """``kwargs`` are ``GaborConfig`` fields (``image_size``, ``frequencies``...)."""
    valid = {f.name for f in fields(GaborConfig)}
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise InputError("kwargs", f"GaborConfig fields {sorted(valid)}", repr(unknown),
                         "remove or rename them")
    config = GaborConfig(**kwargs)
    module = GaborV1(config)
    if spec.source == "untrained":
        module.randomize_(spec.seed)
    elif spec.source == "file":
        load_state_dict_checked(module, read_state_dict(spec.weights), repr(str(spec.weights)))
    defaults = asdict(GaborConfig())
    opts = options_tag({k: v for k, v in asdict(config).items() if defaults[k] != v})
    variant = spec.variant() or "@designed"
    preprocess = Preprocess(size=(config.image_size,) * 2, mean=(0.5,) * 3, std=(0.5,) * 3)
    return ModelAdapter(spec.name, f"{spec.name}{opts}{variant}", module, preprocess, spec.device,
                        layer_paths={"simple": "simple", "complex": "complex", "pooled": "pooled"})

