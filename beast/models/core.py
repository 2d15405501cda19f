"""The optional recurrent core: an LSTM whose state is cleared where an episode ends.

State convention, shared by actors (both runtimes), the learner and `--eval`:

* the core state is ONE tensor per env, `[B, 2, num_layers, hidden]` (h and c stacked), so a
  rollout stores it like any other per-step field: `core_state[t]` is the state the agent
  had when it acted at step t;
* `done[t]` is the step's own `terminated | truncated`: o_t is an episode's final
  observation, so the state *after* step t is zeroed. The next step (next-step autoreset: the
  first observation of the new episode) therefore starts from zeros.

With that, the learner replays an unroll from `core_state[0]` with the rollout's own flags and
reproduces the actor's states exactly, across episode ends inside the unroll and across unroll
boundaries (step 0 repeats the previous unroll's last step, state included).
"""

from __future__ import annotations

import torch
from torch import nn


class LSTMCore(nn.Module):
    """`[T, B, F]` features → `[T, B, H]` outputs, stepping through time with done-masking."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers)
        self.hidden_size = hidden_size
        self.num_layers = num_layers

    @property
    def state_shape(self) -> tuple[int, int, int]:
        return (2, self.num_layers, self.hidden_size)

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return self.lstm.weight_hh_l0.new_zeros(batch_size, *self.state_shape)

    def forward(self, features: torch.Tensor, state: torch.Tensor,
                done: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns outputs [T, B, H] and the state entering step T (zeroed where done[T-1])."""
        # [B, 2, L, H] -> h, c as nn.LSTM wants them: [L, B, H] each.
        h, c = state.to(features.dtype).permute(1, 2, 0, 3).contiguous().unbind(0)
        keep = (~done).to(features.dtype).unsqueeze(0).unsqueeze(-1)  # [1, T, B, 1]
        steps = features.shape[0]
        if not done[:-1].any():  # no episode ends inside: one fused call
            outputs, (h, c) = self.lstm(features, (h, c))
        else:
            per_step = []
            for t in range(steps):
                out, (h, c) = self.lstm(features[t : t + 1], (h, c))
                per_step.append(out)
                if t < steps - 1:
                    h, c = h * keep[:, t], c * keep[:, t]
            outputs = torch.cat(per_step)
        h, c = h * keep[:, -1], c * keep[:, -1]
        return outputs, torch.stack((h, c)).permute(2, 0, 1, 3)
