"""The episodic-memory config group (--episodic-memory, --memory-*): the switch and every size,
rate and temperature of beast.memory. Defaults are the spec's "small" column (a few-minute CPU
run); the Atari-scale column is in each field's docstring. With the switch off the group is
parsed, validated and saved with the run, and has no effect on training.
"""

from __future__ import annotations

import dataclasses

from beast._validate import _check, document_fields

MEMORY_VALUES = ("full", "h")


@document_fields
@dataclasses.dataclass
class MemoryConfig:
    """Momentum-boosted episodic memory (beast.memory.EpisodicMemory): a contrastive key
    encoder finds unfamiliar (rare) states, which are kept in a prioritised store that the
    actors read by k-nearest-neighbour lookup and feed into the recurrent core."""

    episodic_memory: bool = False
    """The switch. Off: no memory is built and the agent is bit-identical to the plain one."""

    memory_key_size: int = 32
    """d: size of a memory key, the unit-norm output of the key encoder g (Atari: 128)."""

    memory_capacity: int = 512
    """C: entries in the episodic store and in the actors' banks (Atari: 20000)."""

    memory_buffer_size: int = 1024
    """F: rows of the familiarity ring buffer the contrastive loss trains on (Atari: 8192)."""

    memory_refresh_every: int = 10
    """R: learner steps between refreshes (contrastive epochs, insertion, publication to the
    actors; Atari: 50)."""

    memory_epochs: int = 3
    """T: contrastive epochs over the familiarity buffer per refresh (Atari: 4)."""

    memory_momentum: float = 0.9
    """beta of the momentum loss M <- beta M + (1 - beta) l (Atari: 0.97)."""

    memory_temperature: float = 0.2
    """tau_c: temperature of the NT-Xent contrastive loss."""

    memory_batch_size: int = 256
    """Minibatch size of the contrastive loss; its in-batch negatives come from the same
    minibatch (Atari: 512)."""

    memory_insert_fraction: float = 0.1
    """q: fraction (at least one row) of the not-yet-stored buffer rows, the highest
    priorities first, written to the store at each refresh (Atari: 0.05)."""

    memory_decay: float = 0.98
    """rho: each refresh multiplies the stored priorities by this, so old rarities give way
    (Atari: 0.99)."""

    memory_top_k: int = 8
    """k: neighbours the readout averages (Atari: 16)."""

    memory_readout_temperature: float = 0.1
    """tau_r: temperature of the softmax over the k neighbours' similarities."""

    memory_noise_std: float = 0.1
    """sigma of the Gaussian noise added to each augmented view (Atari: 0.05)."""

    memory_cutout: int = 2
    """Side of the square zeroed in each augmented view: cells of a grid observation, or a
    window of cutout^2 entries of a flat one (Atari: 16 px); 0 turns cutout off."""

    memory_samples_per_step: int = 64
    """S: transitions of each learner batch pushed into the familiarity buffer."""

    memory_duplicate_cosine: float = 0.98
    """Keys with a cosine above this are one state: the contrastive loss does not use them as
    each other's negatives (--memory-mask-duplicates) and the store keeps one of them."""

    memory_value: str = "full"
    """What an entry's value holds: full ([h, onehot(action), return target]) or h (the LSTM
    state alone; the paper's ablation)."""

    memory_mask_duplicates: bool = True
    """Drop negatives whose un-augmented keys duplicate the anchor's. Off (an ablation), a
    state that repeats exactly is its own negative and a frequent state looks rare."""

    memory_learning_rate: float = 1e-3
    """Adam learning rate of the key encoder g (trained by the contrastive loss only)."""

    def __post_init__(self) -> None:
        for name in ("memory_key_size", "memory_capacity", "memory_refresh_every",
                     "memory_epochs", "memory_top_k", "memory_samples_per_step"):
            value = getattr(self, name)
            _check(value >= 1, f"--{name.replace('_', '-')} must be >= 1 (got {value})")
        _check(self.memory_buffer_size >= 2,
               "--memory-buffer-size must be >= 2: the contrastive loss needs a negative "
               f"(got {self.memory_buffer_size})")
        _check(self.memory_batch_size >= 2,
               "--memory-batch-size must be >= 2: the contrastive loss takes its negatives "
               f"from the minibatch (got {self.memory_batch_size})")
        _check(0.0 <= self.memory_momentum < 1.0,
               f"--memory-momentum must be in [0, 1) (got {self.memory_momentum})")
        for name in ("memory_temperature", "memory_readout_temperature",
                     "memory_learning_rate"):
            value = getattr(self, name)
            _check(value > 0, f"--{name.replace('_', '-')} must be > 0 (got {value})")
        _check(0.0 < self.memory_insert_fraction <= 1.0,
               f"--memory-insert-fraction must be in (0, 1] (got {self.memory_insert_fraction})")
        _check(0.0 < self.memory_decay <= 1.0,
               f"--memory-decay must be in (0, 1]: 0 would forget at once "
               f"(got {self.memory_decay})")
        _check(self.memory_noise_std >= 0,
               f"--memory-noise-std must be >= 0 (got {self.memory_noise_std})")
        _check(self.memory_cutout >= 0,
               f"--memory-cutout must be >= 0 (0 = no cutout; got {self.memory_cutout})")
        _check(-1.0 <= self.memory_duplicate_cosine <= 1.0,
               f"--memory-duplicate-cosine must be in [-1, 1] (got {self.memory_duplicate_cosine})")
        _check(self.memory_value in MEMORY_VALUES,
               f"--memory-value must be full or h (got {self.memory_value!r})")
