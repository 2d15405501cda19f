"""The memory readout the recurrent core consumes: a pure k-nearest-neighbour average.

    query = encode_keys(g, features)                              # [B, d], unit norm
    readout = knn_readout(keys, values, valid, query, k, tau_r)   # [B, v + 2]
    core_input = cat([features, onehot(last_action), reward, readout])

readout = sum_i softmax(sims / tau_r)_i v_i over the top-k valid entries, followed by the
largest similarity (how close the nearest memory is) and the fill ratio n_valid / C (how much
there is to remember). While nothing is stored the readout is all zeros.
"""

from __future__ import annotations

import torch


def readout_size(value_size: int) -> int:
    """Width of a readout: the value, the max similarity, the fill ratio."""
    return value_size + 2


def knn_readout(keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor,
                queries: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
    """[B, v + 2] readout of queries [B, d] from a memory of keys [C, d], values [C, v] and
    valid [C] (bool). Uses the top min(k, n_valid) entries by dot product (cosine for unit
    keys and queries)."""
    if keys.dim() != 2 or queries.dim() != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(f"queries has shape {tuple(queries.shape)}, keys "
                         f"{tuple(keys.shape)}: expected [B, d] and [C, d]")
    if values.dim() != 2 or values.shape[0] != keys.shape[0]:
        raise ValueError(f"values has shape {tuple(values.shape)}, expected "
                         f"[{keys.shape[0]}, v] (one row per key)")
    if tuple(valid.shape) != (keys.shape[0],) or valid.dtype != torch.bool:
        raise ValueError(f"valid has shape {tuple(valid.shape)} and dtype {valid.dtype}, "
                         f"expected ({keys.shape[0]},) bool")
    if k < 1 or temperature <= 0:
        raise ValueError(f"k must be >= 1 and temperature > 0 (got {k}, {temperature})")
    batch, capacity = queries.shape[0], keys.shape[0]
    out = queries.new_zeros(batch, readout_size(values.shape[1]))
    index = valid.nonzero().squeeze(1)
    if index.numel() == 0:
        return out
    sims = queries @ keys[index].T                                    # [B, n_valid]
    top, nearest = sims.topk(min(k, index.numel()), dim=1)            # descending
    weights = torch.softmax(top / temperature, dim=1)
    out[:, :-2] = torch.einsum("bk,bkv->bv", weights, values[index][nearest])
    out[:, -2] = top[:, 0]
    out[:, -1] = index.numel() / capacity
    return out
