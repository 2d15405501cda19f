"""Action sampling shared by actors, the inference side of PolyBeast and evaluation."""

from __future__ import annotations

import torch


def sample_actions(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample from softmax(logits) by the Gumbel-max trick (one fused pass, no normalising)."""
    noise = torch.empty_like(logits).exponential_(generator=generator).log_()
    return (logits - noise).argmax(dim=-1)
