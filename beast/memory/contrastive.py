"""Familiarity by contrast: pure functions that turn observations into a "how rare is this"
priority, without labels (Momentum Boosted Episodic Memory).

A contrastive encoder learns to tell each buffered state from the others. A state seen often
gets many gradient steps and is soon told apart; a rare one keeps a high loss over several
epochs. The running mean of that loss (the momentum loss M) is the familiarity signal.

    view_1 = augment(obs, noise_std, cutout, gen); view_2 = augment(obs, noise_std, cutout, gen)
    mask = duplicate_mask(unaugmented_keys, duplicate_cosine)  # RL states repeat exactly
    loss = nt_xent(g(torso(view_1)), g(torso(view_2)), temperature, mask)      # [N]
    momentum = momentum_update(momentum, loss.detach(), epochs_seen, beta)
    w = priorities(momentum)                                                   # in [0, 1]

Without the mask, the other copies of an exactly repeated state are its negatives: they are
as close to the anchor as its positive, so its loss cannot fall below log(copies) and a
frequent state would look rare.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment(obs: torch.Tensor, noise_std: float, cutout: int,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """A random view of each observation: Gaussian noise (std `noise_std`), then one cutout
    per sample set to exactly 0. Grid observations [N, C, H, W] lose a cutout x cutout patch
    (all channels); flat ones [N, D] have no grid, so they lose a contiguous window of
    cutout^2 entries instead. A cutout larger than the observation is clipped to it; 0 turns
    it off. Returns a new float tensor; `obs` is not modified."""
    if obs.dim() not in (2, 4):
        raise ValueError(f"obs has shape {tuple(obs.shape)}, expected [N, D] or [N, C, H, W]")
    view = obs.to(torch.float32, copy=True)
    if noise_std > 0:
        view += noise_std * torch.randn(view.shape, generator=generator)
    if cutout <= 0:
        return view
    n = view.shape[0]
    if view.dim() == 2:
        drop = _window(view.shape[1], cutout * cutout, n, generator)
    else:
        rows = _window(view.shape[2], cutout, n, generator)
        cols = _window(view.shape[3], cutout, n, generator)
        drop = rows[:, None, :, None] & cols[:, None, None, :]
    return view.masked_fill_(drop, 0.0)


def _window(length: int, width: int, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """[n, length] bool: one random contiguous run of min(width, length) True per row."""
    width = min(width, length)
    start = torch.randint(0, length - width + 1, (n, 1), generator=generator)
    position = torch.arange(length)[None, :]
    return (position >= start) & (position < start + width)


def duplicate_mask(keys: torch.Tensor, threshold: float) -> torch.Tensor:
    """[N, N] bool: True where two different samples' unit-norm keys [N, d] have a cosine
    above `threshold` (one state seen twice). The diagonal is False."""
    if keys.dim() != 2:
        raise ValueError(f"keys has shape {tuple(keys.shape)}, expected [N, d]")
    mask = keys @ keys.T > threshold
    mask.fill_diagonal_(False)
    return mask


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample NT-Xent (SimCLR) loss [N] of two views z1, z2 [N, d] of N samples.

    Both views are normalised here. Anchor a (2N of them) scores its other view as the
    positive against the other 2N - 2 views as negatives, at cosine / temperature; the loss of
    sample i is the mean of its two anchors' cross-entropies. mask [N, N] (True = the same
    state) removes both views of sample j from anchor i's negatives; its diagonal is ignored
    (a sample's own views are never negatives of it)."""
    if z1.dim() != 2:
        raise ValueError(f"z1 has shape {tuple(z1.shape)}, expected [N, d]")
    if z2.shape != z1.shape:
        raise ValueError(f"z2 has shape {tuple(z2.shape)}, expected {tuple(z1.shape)} (like z1)")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {temperature})")
    n = z1.shape[0]
    same = torch.eye(n, dtype=torch.bool, device=z1.device)
    if mask is not None:
        if tuple(mask.shape) != (n, n) or mask.dtype != torch.bool:
            raise ValueError(f"mask has shape {tuple(mask.shape)} and dtype {mask.dtype}, "
                             f"expected ({n}, {n}) bool (one entry per pair of samples)")
        same = same | mask
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    # Anchor a's positive is the other view of its sample: column (a + N) mod 2N.
    positive = torch.arange(2 * n, device=z.device).roll(n)
    excluded = same.repeat(2, 2)
    excluded[torch.arange(2 * n), positive] = False
    excluded.fill_diagonal_(True)
    logits = logits.masked_fill(excluded, float("-inf"))
    per_anchor = torch.logsumexp(logits, dim=1) - logits[torch.arange(2 * n), positive]
    return 0.5 * (per_anchor[:n] + per_anchor[n:])


def momentum_update(previous: torch.Tensor, loss: torch.Tensor, seen: torch.Tensor,
                    beta: float) -> torch.Tensor:
    """The momentum loss M <- beta * M + (1 - beta) * l, and M = l for a sample not seen
    before (`seen` == 0: the count of epochs it was trained on)."""
    if loss.shape != previous.shape or seen.shape != previous.shape:
        raise ValueError(f"loss {tuple(loss.shape)} and seen {tuple(seen.shape)} must have "
                         f"the shape of previous {tuple(previous.shape)}")
    return torch.where(seen == 0, loss, beta * previous + (1.0 - beta) * loss)


def priorities(momentum: torch.Tensor) -> torch.Tensor:
    """w = 1/2 + 1/2 z / max|z| with z the standardised momentum loss: the most unfamiliar
    sample gets 1 (or the least gets 0), the mean 1/2. Equal losses give 1/2 everywhere.
    (z / max|z| does not depend on the standard deviation, only on M - mean(M).)"""
    if momentum.numel() == 0 or momentum.max() == momentum.min():
        return torch.full_like(momentum, 0.5)  # (not via the mean: it need not round back)
    centred = momentum - momentum.mean()
    return 0.5 + 0.5 * centred / centred.abs().max()
