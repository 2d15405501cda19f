"""beast.memory against slow references written here (loops, sorted lists), plus the property
the duplicate mask exists for: with it, exactly repeated states look familiar; without it they
look rarer than singletons."""

from __future__ import annotations

import math

import pytest
import torch

from beast._validate import ConfigError
from beast.memory import (
    EpisodicMemory,
    EpisodicStore,
    FamiliarityBuffer,
    MemoryBanks,
    MemoryConfig,
    augment,
    duplicate_mask,
    encode_keys,
    knn_readout,
    make_key_encoder,
    momentum_update,
    nt_xent,
    priorities,
    readout_size,
    value_size,
)
from beast.memory import banks as banks_module


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def reference_readout(keys, values, valid, queries, k, temperature):
    out = []
    n_valid = sum(bool(v) for v in valid)
    for q in queries:
        if n_valid == 0:
            out.append([0.0] * (values.shape[1] + 2))
            continue
        sims = sorted(((float(q @ keys[i]), i) for i in range(len(keys)) if valid[i]),
                      reverse=True)[:k]
        exps = [math.exp(s / temperature) for s, _ in sims]
        row = [sum(e * float(values[i, c]) for e, (_, i) in zip(exps, sims)) / sum(exps)
               for c in range(values.shape[1])]
        out.append(row + [sims[0][0], n_valid / len(keys)])
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("k", [1, 4, 50])
def test_knn_readout_matches_brute_force(k):
    g = torch.Generator().manual_seed(0)
    keys = unit(torch.randn(20, 6, generator=g, dtype=torch.float64))
    values = torch.randn(20, 3, generator=g, dtype=torch.float64)
    valid = torch.rand(20, generator=g) < 0.6
    queries = unit(torch.randn(5, 6, generator=g, dtype=torch.float64))
    got = knn_readout(keys, values, valid, queries, k, 0.3)
    assert got.shape == (5, readout_size(3))
    torch.testing.assert_close(got, reference_readout(keys, values, valid, queries, k, 0.3))
    empty = knn_readout(keys, values, torch.zeros(20, dtype=torch.bool), queries, k, 0.3)
    assert torch.equal(empty, torch.zeros(5, 5, dtype=torch.float64))


def reference_nt_xent(z1, z2, temperature, mask):
    n = len(z1)
    views = [unit(z1), unit(z2)]
    losses = []
    for i in range(n):
        per_anchor = []
        for a in (0, 1):
            anchor, positive = views[a][i], views[1 - a][i]
            terms = [float(anchor @ positive) / temperature]
            for j in range(n):
                if j != i and not (mask is not None and mask[i, j]):
                    terms += [float(anchor @ views[b][j]) / temperature for b in (0, 1)]
            per_anchor.append(-terms[0] + math.log(sum(math.exp(t) for t in terms)))
        losses.append(sum(per_anchor) / 2)
    return torch.tensor(losses, dtype=torch.float64)


@pytest.mark.parametrize("masked", [False, True])
def test_nt_xent_matches_reference(masked):
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(6, 4, generator=g, dtype=torch.float64)
    z2 = torch.randn(6, 4, generator=g, dtype=torch.float64)
    mask = (torch.rand(6, 6, generator=g) < 0.4) if masked else None  # diagonal ignored
    torch.testing.assert_close(nt_xent(z1, z2, 0.5, mask), reference_nt_xent(z1, z2, 0.5, mask))
    with pytest.raises(ValueError, match="z2"):
        nt_xent(z1, z2[:5], 0.5)
    with pytest.raises(ValueError, match="mask"):
        nt_xent(z1, z2, 0.5, torch.zeros(5, 5, dtype=torch.bool))


def test_duplicate_mask_marks_repeats_never_the_diagonal():
    keys = unit(torch.tensor([[1.0, 0, 0], [1.0, 0.05, 0], [0, 1.0, 0], [1.0, 0, 0]]))
    expected = torch.tensor([[0, 1, 0, 1], [1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 0, 0]]).bool()
    assert torch.equal(duplicate_mask(keys, 0.98), expected)
    assert not duplicate_mask(keys, -2.0).diagonal().any()


def test_momentum_update_and_priorities_match_formulas():
    g = torch.Generator().manual_seed(2)
    previous, loss = torch.rand(10, generator=g), torch.rand(10, generator=g)
    seen = torch.tensor([0, 1, 2, 0, 3, 1, 0, 5, 1, 1])
    expected = [float(loss[i]) if seen[i] == 0 else 0.9 * float(previous[i]) + 0.1 * float(loss[i])
                for i in range(10)]
    torch.testing.assert_close(momentum_update(previous, loss, seen, 0.9), torch.tensor(expected))
    momentum = torch.randn(20, generator=g, dtype=torch.float64)
    mean = sum(momentum.tolist()) / 20
    std = math.sqrt(sum((m - mean) ** 2 for m in momentum.tolist()) / 19)
    z = [(m - mean) / std for m in momentum.tolist()]
    reference = torch.tensor([0.5 + 0.5 * zi / max(abs(v) for v in z) for zi in z],
                             dtype=torch.float64)
    w = priorities(momentum)
    torch.testing.assert_close(w, reference)
    assert w.min() >= 0 and w.max() <= 1 and 1.0 in (w.max(), 1 - w.min())
    assert torch.equal(priorities(torch.full((4,), 0.1)), torch.full((4,), 0.5))


def ids_stored(store: EpisodicStore) -> set[int]:
    return {int(f) for f in store.feature[store.valid, 0]}


def insert_ids(store, ids, priority, step, returns=None, keys=None):
    n = len(ids)
    keys = keys if keys is not None else unit(torch.randn(n, store.key.shape[1]))
    features = torch.tensor(ids, dtype=torch.float32)[:, None]
    returns = returns if returns is not None else torch.zeros(n)
    return store.insert(keys, features.clone(), features, returns, priority, step, 0.98)


def test_eviction_keeps_the_top_priorities_and_evicts_the_oldest_on_ties():
    torch.manual_seed(3)
    store = EpisodicStore(capacity=8, key_size=16, value_size=1, feature_size=1)
    priority = torch.rand(30)
    for step in range(3):
        insert_ids(store, list(range(10 * step, 10 * step + 10)), priority[10 * step:][:10], step)
    assert ids_stored(store) == set(priority.topk(8).indices.tolist())
    assert store.fill_ratio == 1.0

    store = EpisodicStore(capacity=4, key_size=16, value_size=1, feature_size=1)
    for i in range(4):
        insert_ids(store, [i], torch.tensor([0.5]), step=i)
    assert insert_ids(store, [4], torch.tensor([0.5]), step=4).added == 1
    assert ids_stored(store) == {1, 2, 3, 4}  # id 0, the oldest at the lowest priority, went
    counts = insert_ids(store, [5], torch.tensor([0.4]), step=5)  # below every stored one
    assert counts.rejected == 1 and ids_stored(store) == {1, 2, 3, 4}


def test_dedup_keeps_the_higher_return_and_the_max_priority():
    store = EpisodicStore(capacity=4, key_size=3, value_size=1, feature_size=1)
    k0, k1, k2 = unit(torch.tensor([[1.0, 0, 0], [1.0, 0.05, 0], [1.0, 0, 0.05]]))
    insert_ids(store, [0], torch.tensor([0.3]), 0, torch.tensor([1.0]), k0[None])
    counts = insert_ids(store, [1], torch.tensor([0.1]), 1, torch.tensor([2.0]), k1[None])
    assert counts.overwritten == 1 and int(store.valid.sum()) == 1
    assert ids_stored(store) == {1} and torch.equal(store.key[store.valid][0], k1)
    assert float(store.priority[store.valid]) == pytest.approx(0.3)
    assert int(store.insert_step[store.valid]) == 1
    counts = insert_ids(store, [2], torch.tensor([0.9]), 2, torch.tensor([0.5]), k2[None])
    assert counts.merged == 1 and ids_stored(store) == {1}
    assert float(store.return_target[store.valid]) == 2.0
    assert float(store.priority[store.valid]) == pytest.approx(0.9)

    store = EpisodicStore(capacity=4, key_size=3, value_size=1, feature_size=1)
    insert_ids(store, [7, 8], torch.tensor([0.8, 0.2]), 0, torch.tensor([1.0, 3.0]),
               torch.stack([k1, k2]))
    assert ids_stored(store) == {8} and float(store.priority[store.valid]) == pytest.approx(0.8)


def repeated_vs_singleton_momentum(seed: int, mask: bool) -> tuple[float, float]:
    """4 states repeated 32 times each and 128 singletons in one buffer; identity torso."""
    g = torch.Generator().manual_seed(seed)
    frequent, singletons = torch.randn(4, 8, generator=g), torch.randn(128, 8, generator=g)
    obs = torch.cat([frequent.repeat_interleave(32, 0), singletons])
    config = MemoryConfig(memory_buffer_size=256, memory_batch_size=256, memory_cutout=1,
                          memory_mask_duplicates=mask)
    torch.manual_seed(seed)
    memory = EpisodicMemory(config, (8,), 8, 1, make_key_encoder(8, 32), seed)
    memory.observe(obs, obs, torch.zeros(256, 1), torch.zeros(256))
    for _ in range(8):
        memory.refresh(lambda x: x)
    momentum = memory.buffer.momentum
    return float(momentum[:128].mean()), float(momentum[128:].mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_duplicate_mask_makes_repeated_states_familiar(seed):
    repeated, singleton = repeated_vs_singleton_momentum(seed, mask=True)
    assert repeated < singleton
    repeated, singleton = repeated_vs_singleton_momentum(seed, mask=False)
    assert repeated >= singleton


def filled_store(seed: int) -> EpisodicStore:
    g = torch.Generator().manual_seed(seed)
    store = EpisodicStore(capacity=10, key_size=4, value_size=3, feature_size=2)
    store.insert(unit(torch.randn(6, 4, generator=g)), torch.randn(6, 3, generator=g),
                 torch.randn(6, 2, generator=g), torch.randn(6, generator=g),
                 torch.rand(6, generator=g), 0, 0.98)
    return store


def test_banks_read_the_published_copy_and_retry_when_the_version_moves(monkeypatch):
    banks = MemoryBanks(capacity=10, key_size=4, value_size=3).share()
    assert banks.keys.is_shared() and banks.version.is_shared()
    queries = unit(torch.randn(5, 4, generator=torch.Generator().manual_seed(9)))
    first, second = filled_store(0), filled_store(1)

    def readout(store):
        return knn_readout(store.key, store.value, store.valid, queries, 3, 0.1)

    assert torch.equal(banks.read(queries, 3, 0.1), torch.zeros(5, 5))
    banks.publish(first)
    assert int(banks.version) == 1 and torch.equal(banks.keys[1], first.key)
    assert not banks.valid[0].any()  # the copy readers at version 0 used is untouched
    assert torch.equal(banks.read(queries, 3, 0.1), readout(first))
    banks.publish(second)
    assert int(banks.version) == 2 and torch.equal(banks.keys[1], first.key)
    assert torch.equal(banks.read(queries, 3, 0.1), readout(second))

    calls = []

    def publish_during_read(*args):  # a publication lands while the reader computes
        calls.append(args)
        if len(calls) == 1:
            banks.publish(first)
        return knn_readout(*args)

    monkeypatch.setattr(banks_module, "knn_readout", publish_during_read)
    assert torch.equal(banks.read(queries, 3, 0.1), readout(first)) and len(calls) == 2


def make_memory(seed: int = 0, **overrides) -> EpisodicMemory:
    config = MemoryConfig(**{"memory_buffer_size": 64, "memory_batch_size": 16,
                             "memory_capacity": 16, "memory_refresh_every": 3,
                             "memory_epochs": 2, **overrides})
    torch.manual_seed(seed)
    return EpisodicMemory(config, (2, 3, 3), 6, 4, make_key_encoder(6, 32), seed)


def torso(obs: torch.Tensor) -> torch.Tensor:
    return torch.tanh(obs.flatten(1)[:, :6] + obs.flatten(1)[:, 6:12])


def observe_random(memory: EpisodicMemory, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 2, 3, 3, generator=g)
    returns = torch.randn(n, generator=g)
    memory.observe(obs, torso(obs), torch.randn(n, 4, generator=g), returns)


def test_memory_refreshes_every_r_steps_and_frozen_changes_nothing():
    memory = make_memory()
    assert all("memory/refreshes" not in memory.step(torso) for _ in range(3))  # empty buffer
    observe_random(memory, 40, seed=1)
    metrics = [memory.step(torso) for _ in range(9)]
    assert [i for i, m in enumerate(metrics) if "memory/contrastive_loss" in m] == [2, 5, 8]
    assert metrics[-1]["memory/refreshes"] == 3 and all("memory/fill" in m for m in metrics)
    assert 0 < metrics[-1]["memory/fill"] <= 1 and int(memory.banks.version) == 3

    memory.freeze()
    before = memory.state_dict()
    observe_random(memory, 40, seed=2)
    for _ in range(10):
        memory.step(torso)
    after = memory.state_dict()
    assert all(torch.equal(before["store"][k], after["store"][k]) for k in before["store"])
    assert torch.equal(before["buffer"]["obs"], after["buffer"]["obs"])
    assert after["steps"] == before["steps"]


def test_state_dict_round_trips_and_a_resumed_memory_continues_identically(tmp_path):
    memory = make_memory(seed=0)
    observe_random(memory, 40, seed=1)
    for _ in range(3):
        memory.step(torso)
    torch.save(memory.state_dict(), tmp_path / "memory.pt")
    encoder_state = {k: v.clone() for k, v in memory.key_encoder.state_dict().items()}

    resumed = make_memory(seed=5)  # other weights and generator until loaded
    resumed.key_encoder.load_state_dict(encoder_state)  # the model's checkpoint holds g
    resumed.load_state_dict(torch.load(tmp_path / "memory.pt", weights_only=True))
    for name in ("key", "value", "priority", "insert_step", "valid"):
        assert torch.equal(getattr(resumed.store, name), getattr(memory.store, name))
    for name in ("obs", "momentum", "epochs_seen", "inserted"):
        assert torch.equal(getattr(resumed.buffer, name), getattr(memory.buffer, name))
    assert resumed.steps == 3 and int(resumed.banks.version) == 1

    for m in (memory, resumed):
        observe_random(m, 20, seed=3)
        for _ in range(3):
            m.step(torso)
    for name in ("key", "value", "feature", "priority", "insert_step", "valid"):
        assert torch.equal(getattr(resumed.store, name), getattr(memory.store, name))
    assert torch.equal(resumed.buffer.momentum, memory.buffer.momentum)


def test_value_vector_and_sizes():
    memory = make_memory(memory_value="full")
    h, actions = torch.randn(5, 1), torch.eye(2)[torch.tensor([0, 1, 1, 0, 1])]
    returns = torch.arange(5.0)
    values = memory.value_vector(h, actions, returns)
    assert torch.equal(values, torch.cat([h, actions, returns[:, None]], dim=1))
    assert value_size(1, 2, "full") == 4 and value_size(7, 2, "h") == 7
    with pytest.raises(ValueError, match="width"):
        memory.value_vector(torch.randn(5, 3), actions, returns)
    keys = encode_keys(memory.key_encoder, torch.randn(3, 6))
    torch.testing.assert_close(keys.norm(dim=1), torch.ones(3))


def test_augment_zeroes_one_patch_and_keeps_its_input():
    obs = torch.arange(1.0, 1 + 3 * 2 * 5 * 5).reshape(3, 2, 5, 5)
    original = obs.clone()
    view = augment(obs, 0.0, 2, torch.Generator().manual_seed(0))
    assert torch.equal(obs, original) and view.shape == obs.shape
    for sample in range(3):
        zero = view[sample] == 0
        assert torch.equal(zero[0], zero[1]) and int(zero[0].sum()) == 4
        rows, cols = zero[0].nonzero().unbind(1)
        assert rows.max() - rows.min() == 1 and cols.max() - cols.min() == 1
        assert torch.equal(view[sample][~zero], obs[sample][~zero])
    flat = torch.arange(1.0, 41).reshape(4, 10)
    view = augment(flat, 0.0, 2, torch.Generator().manual_seed(0))
    for row in view == 0:
        where = row.nonzero().squeeze(1)
        assert len(where) == 4 and int(where[-1] - where[0]) == 3
    noisy = augment(flat, 0.1, 0, torch.Generator().manual_seed(4))
    assert not torch.equal(noisy, flat)
    assert torch.equal(noisy, augment(flat, 0.1, 0, torch.Generator().manual_seed(4)))
    assert (noisy - flat).abs().max() < 1.0


def test_buffer_ring_overwrites_oldest_and_config_validates():
    buffer = FamiliarityBuffer(capacity=4, obs_shape=(1,), feature_size=1, value_size=1)
    for start in (0, 3):
        ids = torch.arange(start, start + 3.0)[:, None]
        buffer.push(ids, ids, ids, ids[:, 0])
        buffer.momentum[:buffer.size] = 1.0
    assert buffer.size == 4 and buffer.obs[:, 0].tolist() == [4.0, 5.0, 2.0, 3.0]
    assert buffer.momentum.tolist() == [1.0, 1.0, 1.0, 1.0]
    buffer.push(torch.ones(1, 1), torch.ones(1, 1), torch.ones(1, 1), torch.ones(1))
    assert buffer.momentum[2] == 0 and buffer.epochs_seen[2] == 0
    with pytest.raises(ValueError, match="features"):
        buffer.push(torch.ones(2, 1), torch.ones(3, 1), torch.ones(2, 1), torch.ones(2))
    with pytest.raises(ConfigError, match="--memory-top-k"):
        MemoryConfig(memory_top_k=0)
    with pytest.raises(ConfigError, match="--memory-value"):
        MemoryConfig(memory_value="hv")
