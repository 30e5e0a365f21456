"""Shot noise of the injected arc: E = gain·max(I, 0) electrons per pixel, E′ ~ Poisson(E), I′ = I + (E′ − E)/gain.

I + (E′ − E)/gain equals min(I, 0) + E′/gain, which is how it is computed: only the counts E′ are
drawn, and the image never round-trips through float64. Faint arcs (ΣE ≤ 16 e⁻ per pixel on
average) draw their counts as a Poisson total N ~ Poisson(ΣE) placed on pixels by N inverse-CDF
draws with probabilities E/ΣE — the same joint distribution as independent per-pixel Poisson draws
(a Poisson process split into cells) at a fraction of the cost; brighter images are drawn pixel by
pixel. On a GPU every image is drawn pixel by pixel: the placement needs the total on the host
(a synchronisation per image), and kernel launches, not arithmetic, are what cost there. Each
image draws only from its own generator, so its noise does not depend on the batch.
"""

from __future__ import annotations

import torch

FEW_ELECTRONS_PER_PIXEL = 16.0  # mean e⁻/pixel up to which counts are a Poisson total placed by inverse CDF


def add_poisson_noise(image: torch.Tensor, gain: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Poisson shot noise of an arc image (any shape) with ``gain`` e⁻ per unit of ``image``.

    A gain of 10¹² gives back the input to float rounding; returns the input dtype."""
    return add_poisson_noise_batch(image[None], gain, [generator])[0]


def _add_noise_(image: torch.Tensor, gain: float, generator: torch.Generator | None) -> None:
    """Replace one flattened image I by min(I, 0) + E′/gain in place, E′ the counts drawn for it."""
    signal = image.clamp_min(0)
    if image.device.type == "cpu":  # faint arcs: a Poisson total placed by inverse CDF (needs the total here)
        cdf = torch.cumsum(signal, dim=0, dtype=torch.float64)  # one image at a time: stays in cache
        total = float(cdf[-1]) * gain
        if total <= FEW_ELECTRONS_PER_PIXEL * image.shape[0]:
            n = int(torch.poisson(torch.tensor([total], dtype=torch.float64, device=image.device),
                                  generator=generator).item())
            u = torch.rand(n, dtype=torch.float64, device=image.device, generator=generator) * (total / gain)
            pix = torch.searchsorted(cdf, u, right=True).clamp_max(image.shape[0] - 1)
            # every count adds the same 1/gain, so the sum does not depend on the order of adding
            image.clamp_(max=0).index_add_(0, pix, torch.full((n,), 1 / gain, dtype=image.dtype, device=image.device))
            return
    # bright arcs, and every arc on a GPU: pixel by pixel, in float64 (large counts)
    drawn = torch.poisson(gain * signal.to(torch.float64), generator=generator)
    image.copy_(image.to(torch.float64).clamp_(max=0) + drawn / gain)


def add_poisson_noise_batch(images: torch.Tensor, gain: float, generators: list[torch.Generator | None],
                            inplace: bool = False) -> torch.Tensor:
    """:func:`add_poisson_noise` for a batch (B, ...), image b drawing only from ``generators[b]``
    (``inplace``: overwrite ``images``, which must be contiguous, and return it)."""
    if gain <= 0:
        raise ValueError(f"gain must be > 0 e-/nmgy, got {gain}")
    if len(generators) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(generators)} generators")
    out = images if inplace else images.clone(memory_format=torch.contiguous_format)
    flat = out.view(out.shape[0], -1)
    for b, gen in enumerate(generators):
        _add_noise_(flat[b], gain, gen)
    return out
