"""Run configuration: dataclasses with one docstring per field, validated with reasons.

Each group is the set of fields one component needs, so code takes the group it uses
(the learner takes `LossConfig` and `OptimConfig`, the model `ModelConfig`), never the whole
`Config`. Field docstrings are the single source of the command-line help and of the
"Fields:" section `help()` shows for each group (beast._validate.document_fields). The loss
groups (`LossConfig` and one group per loss: `ImpactConfig`, `VmpoConfig`) live in
beast.loss_config and are re-exported here.

The command line is built from these fields by beast.flags:

    parser = build_parser(prog="beast.mono")        # flags for every field, defaults suppressed
    args = parser.parse_args(argv)                  # only flags the user typed appear
    config = config_from_args(args, base=None)      # defaults (or a saved run) + typed flags
    config.to_dict() / Config.from_dict(d)          # JSON round trip for run directories
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from beast._validate import ConfigError, _check, document_fields
from beast.loss_config import LOSSES, ImpactConfig, LossConfig, VmpoConfig
from beast.memory.config import MemoryConfig

__all__ = ["LOSSES", "Config", "ConfigError", "EnvConfig", "EvalConfig", "ImpactConfig",
           "LossConfig", "ModelConfig", "MonoConfig", "OptimConfig", "PolyConfig", "RunConfig",
           "SyncConfig", "VmpoConfig", "check_mono"]


@document_fields
@dataclasses.dataclass
class EnvConfig:
    """The environments each actor steps: which id, how many, which backend."""

    env: str = "CartPole-v1"
    """Environment id: a Gymnasium id (`python -m beast.envs` lists them), or with
    --env-backend envpool an envpool task id (`python -m beast.envs --backend envpool`)."""

    num_envs: int = 64
    """Environments stepped together by each actor, with one batched inference call per step."""

    env_backend: str = "gymnasium"
    """gymnasium, or envpool (its batched C++ envs; also opens Procgen and gfootball/... ids)."""

    episodic_life: bool = False
    """Atari: a lost life ends the learning episode (terminated); reported returns stay whole games."""

    sticky_actions: bool = False
    """Atari: repeat the previous action with probability 0.25 (Machado et al. 2018)."""

    def __post_init__(self) -> None:
        _check(bool(self.env), "--env must name a Gymnasium id, e.g. CartPole-v1")
        _check(self.num_envs >= 1, f"--num-envs must be >= 1 (got {self.num_envs})")
        _check(self.env_backend in ("gymnasium", "envpool"),
               f"--env-backend must be gymnasium or envpool (got {self.env_backend!r})")


@document_fields
@dataclasses.dataclass
class ModelConfig:
    """The policy-value network every runtime builds (beast.models.build_model)."""

    hidden_sizes: tuple[int, ...] = (128, 128)
    """Widths of the MLP torso's hidden layers."""

    activation: str = "tanh"
    """Hidden-layer nonlinearity: tanh or relu."""

    shared_torso: bool = False
    """One torso for policy and value (fewer FLOPs) instead of two towers (steadier learning).
    Image torsos and recurrent models always share theirs."""

    torso: str = "auto"
    """auto (MLP for flat observations; for images the Nature CNN, or the IMPALA ResNet on
    frames under 36x36 such as MinAtar), mlp, nature or resnet."""

    use_lstm: bool = False
    """Add an LSTM core after the torso; its state is reset where episodes end and carried in
    the rollout (`core_state`), the same way in actors, learner and --eval."""

    last_action_reward: bool = False
    """Feed the LSTM core the last action (one-hot; zeros at an episode's start) and the
    reward clipped to [-1, 1] beside the torso's features (needs --use-lstm; on with
    --episodic-memory)."""

    model_factory: str | None = None
    """module:function building your own model from (observation_space, action_space,
    ModelConfig), used by actors, learner and --eval alike; default: Beast's build_model."""

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        _check(len(self.hidden_sizes) >= 1, "--hidden-sizes needs at least one layer width")
        _check(all(h >= 1 for h in self.hidden_sizes),
               f"--hidden-sizes must be positive widths (got {self.hidden_sizes})")
        _check(self.activation in ("tanh", "relu"),
               f"--activation must be tanh or relu (got {self.activation!r})")
        _check(self.torso in ("auto", "mlp", "nature", "resnet"),
               f"--torso must be auto, mlp, nature or resnet (got {self.torso!r})")
        _check(self.model_factory is None or ":" in self.model_factory,
               f"--model-factory must be module:function (got {self.model_factory!r})")


@document_fields
@dataclasses.dataclass
class OptimConfig:
    """The learner's optimiser, learning-rate schedule and gradient clipping."""

    optimizer: str = "adam"
    """adam or rmsprop."""

    learning_rate: float = 8e-3
    """Initial learning rate; see --lr-decay. Tuned with --epsilon 1e-2: with Adam's usual
    1e-5, use about 2e-3."""

    lr_decay: str = "linear"
    """linear: decay the learning rate to zero at --total-steps; none: keep it constant."""

    epsilon: float = 1e-2
    """Optimiser epsilon (Adam eps or RMSprop eps). Large on purpose, as in IMPALA's and
    TorchBeast's RMSprop (0.01): with eps far below a weight's gradient RMS, Adam scales every
    update to about the learning rate however weak the signal, so once a task is solved and
    the advantages shrink to noise, the policy still takes full-size random steps (plus the
    entropy bonus) until it falls off a cliff: long CartPole runs collapsed to a return of 9.
    With eps above the gradient RMS the step shrinks with the gradient (momentum SGD at
    about lr / eps). bench/long_cartpole.py measures it."""

    rmsprop_alpha: float = 0.99
    """RMSprop smoothing constant."""

    momentum: float = 0.0
    """RMSprop momentum."""

    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value (0 disables clipping)."""

    def __post_init__(self) -> None:
        _check(self.optimizer in ("adam", "rmsprop"), "--optimizer must be adam or rmsprop")
        _check(self.learning_rate > 0, f"--learning-rate must be > 0 (got {self.learning_rate})")
        _check(self.lr_decay in ("linear", "none"), "--lr-decay must be linear or none")
        _check(self.epsilon > 0, "--epsilon must be > 0")
        _check(0 < self.rmsprop_alpha < 1, "--rmsprop-alpha must be in (0, 1)")
        _check(self.momentum >= 0, "--momentum must be >= 0")
        _check(self.max_grad_norm >= 0, "--max-grad-norm must be >= 0 (0 disables clipping)")


@document_fields
@dataclasses.dataclass
class RunConfig:
    """Run control and the shape of the data, for either runtime."""

    recipe: str = "auto"
    """Settings per env family that the run starts from (flags override them): auto (chosen
    from the env id), classic, continuous, minatar, atari, procgen, or none (Beast's bare
    defaults). `python -m beast.envs` shows each id's; beast/recipes.py lists their values."""

    num_actors: int = 1
    """MonoBeast: actor processes (0 runs actor and learner serially in the main process).
    PolyBeast: actor connections (C++ threads) to the env servers."""

    unroll_length: int = 32
    """Steps T per unroll; each holds T+1 steps (step 0 repeats the previous unroll's last)."""

    batch_size: int = 1
    """Unrolls (of num_envs environments each) stacked per learner step."""

    total_steps: int = 1_000_000
    """Environment steps to train for, as the actors count them (the step budget; also the
    linear LR decay horizon)."""

    target_return: float | None = None
    """Stop early once the mean return of the last 100 episodes reaches this value."""

    seed: int = 0
    """Seed for model initialisation, environments and action sampling."""

    device: str = "cpu"
    """Learner device: cpu or cuda (actors always run on the CPU)."""

    savedir: str = "runs"
    """Parent folder of new run directories."""

    run_name: str | None = None
    """Run directory name under --savedir; default: env id plus a timestamp."""

    checkpoint_minutes: float = 10.0
    """Minutes between checkpoints (one is always written at exit)."""

    log_seconds: float | None = None
    """Seconds between log rows (TensorBoard, logs.csv and the progress line). Default: about
    1/50 of the run's expected length, measured as it goes, but between 1 and 5 s."""

    log_steps: int | None = None
    """Write a row every this many env steps instead of by time, so rows land at the same
    steps in every run (what two reproducible serial runs compare)."""

    wandb: bool = False
    """Also log every row, and the config, to Weights & Biases (the [wandb] extra; W&B's own
    settings apply, e.g. WANDB_MODE=offline)."""

    wandb_project: str = "beast"
    """W&B project of --wandb runs."""

    wandb_group: str | None = None
    """W&B group of --wandb runs (e.g. one per experiment, its seeds inside)."""

    wandb_tags: tuple[str, ...] = ()
    """W&B tags of --wandb runs."""

    def __post_init__(self) -> None:
        self.wandb_tags = tuple(str(t) for t in self.wandb_tags)
        from beast.recipes import RECIPE_NAMES

        _check(self.recipe in RECIPE_NAMES,
               f"--recipe must be one of {', '.join(RECIPE_NAMES)} (got {self.recipe!r})")
        _check(self.num_actors >= 0, "--num-actors must be >= 0 (0 = serial mode)")
        _check(self.unroll_length >= 1, "--unroll-length must be >= 1")
        _check(self.batch_size >= 1, "--batch-size must be >= 1")
        _check(self.total_steps >= 1, "--total-steps must be >= 1")
        _check(0 <= self.seed < 2**31, f"--seed must be in [0, 2^31) (got {self.seed})")
        _check(self.device == "cpu" or self.device.startswith("cuda"),
               f"--device must be cpu or cuda[:N] (got {self.device!r})")
        _check(self.checkpoint_minutes > 0, "--checkpoint-minutes must be > 0")
        _check(self.log_seconds is None or self.log_seconds > 0, "--log-seconds must be > 0")
        _check(self.log_steps is None or self.log_steps >= 1, "--log-steps must be >= 1")
        _check(self.log_seconds is None or self.log_steps is None,
               "--log-seconds and --log-steps are exclusive")


@document_fields
@dataclasses.dataclass
class MonoConfig:
    """MonoBeast's runtime: shared rollout slots and actor supervision."""

    slots_per_actor: int = 2
    """Shared rollout slots each actor owns; 2 lets an actor fill one while the learner reads one."""

    max_actor_restarts: int = 5
    """Actor deaths, env errors or hangs tolerated before the run stops with an error."""

    actor_timeout: float = 120.0
    """Seconds an actor with a slot to fill may deliver nothing before it counts as hung: it
    is killed, logged and restarted like a crash (an Atari unroll takes a few seconds)."""

    def __post_init__(self) -> None:
        _check(self.slots_per_actor >= 1, "--slots-per-actor must be >= 1")
        _check(self.max_actor_restarts >= 0, "--max-actor-restarts must be >= 0")
        _check(self.actor_timeout > 0, "--actor-timeout must be > 0")


@document_fields
@dataclasses.dataclass
class EvalConfig:
    """Evaluation: of a trained run (--eval RUN), and of the current weights while training
    (--eval-every), on envs of their own, built as for training but playing whole games."""

    eval_episodes: int = 10
    """Episodes played by --eval, and by each periodic evaluation."""

    eval_every: int | None = None
    """Evaluate the current weights every this many env steps, in a process of its own (the
    learner does not wait): logs eval/return_mean, eval/return_std and eval/length_mean, and
    keeps the best weights in checkpoint_best.pt."""

    eval_greedy: bool = False
    """Evaluate the greedy policy (the most likely action, a Gaussian's mean) instead of
    sampling the policy as training does (the default)."""

    checkpoint: str = "latest"
    """Which checkpoint --eval plays: latest (checkpoint.pt) or best (checkpoint_best.pt, by
    periodic eval return)."""

    video: bool = False
    """--eval: record each episode to an mp4 file in RUN/videos (envs that render rgb_array;
    needs the [video] extra)."""

    eval_video_every: int | None = None
    """Record one episode of the first periodic evaluation past every this many env steps."""

    def __post_init__(self) -> None:
        _check(self.eval_episodes >= 1, "--eval-episodes must be >= 1")
        _check(self.eval_every is None or self.eval_every >= 1, "--eval-every must be >= 1")
        _check(self.checkpoint in ("latest", "best"),
               f"--checkpoint must be latest or best (got {self.checkpoint!r})")
        _check(self.eval_video_every is None or self.eval_video_every >= 1,
               "--eval-video-every must be >= 1")
        _check(self.eval_video_every is None or self.eval_every is not None,
               "--eval-video-every records periodic evaluations: give --eval-every too")


@document_fields
@dataclasses.dataclass
class SyncConfig:
    """When actors take the learner's new weights (beast.sync: every mode is an APS
    controller setting, so all are counted and logged the same way)."""

    sync: str = "every-step"
    """When actors take new weights (each at its next unroll boundary once flagged): every-step
    (flagged after every learner step, i.e. whenever the learner has a newer version), periodic
    (once it lags --sync-period versions) or aps (when its policy drifted, see --aps-*)."""

    sync_period: int = 16
    """--sync periodic: flag an actor once it lags this many learner versions."""

    aps_delta: float = 0.01
    """APS: sync when the estimated KL(actor || learner) per state reaches this (nats)."""

    aps_max_lag: int = 32
    """APS: sync at the latest when an actor lags this many versions."""

    aps_max_seconds: float | None = None
    """APS: sync at the latest this many seconds after the previous sync (default: off)."""

    aps_target_rate: float | None = None
    """APS budget mode: adapt --aps-delta towards this many syncs per learner step per actor."""

    def __post_init__(self) -> None:
        _check(self.sync in ("every-step", "periodic", "aps"),
               f"--sync must be every-step, periodic or aps (got {self.sync!r})")
        _check(self.sync_period >= 1, "--sync-period must be >= 1")
        _check(self.aps_delta >= 0, "--aps-delta must be >= 0")
        _check(self.aps_max_lag >= 1, "--aps-max-lag must be >= 1")
        _check(self.aps_max_seconds is None or self.aps_max_seconds > 0,
               "--aps-max-seconds must be > 0")
        _check(self.aps_target_rate is None or self.aps_target_rate > 0,
               "--aps-target-rate must be > 0")


def _check_address(address: str, flag: str = "--server-addresses", lowest_port: int = 1) -> None:
    """HOST:PORT with a port in 1..65535 (or from `lowest_port`), or unix:/path."""
    if address.startswith("unix:"):
        _check(len(address) > 5, f"{flag}: {address!r} names no socket path")
        return
    host, _, port = address.rpartition(":")
    _check(bool(host) and port.isdigit() and lowest_port <= int(port) <= 65535,
           f"{flag}: {address!r} is not HOST:PORT (port {lowest_port}-65535) or unix:/path")


@document_fields
@dataclasses.dataclass
class PolyConfig:
    """PolyBeast's runtime: the env servers it starts or connects to."""

    actors: str = "central"
    """PolyBeast: where the policy acts. central: C++ actor threads step env servers and one
    inference thread acts for all; remote: actor processes (python -m beast.poly.actor) step
    their own envs with a local policy copy, send whole unrolls, and get weights only when the
    sync controller (--sync) says so."""

    actor_address: str = "127.0.0.1:0"
    """PolyBeast with --actors remote: where the learner accepts actors (HOST:PORT; port 0: a
    free one). A non-loopback address needs $BEAST_AUTH_TOKEN, for the learner and its actors."""

    start_actors: bool = True
    """PolyBeast with --actors remote: start --num-actors local actor processes (restarted if
    they die); --no-start-actors waits for actors started by hand with the learner's flags."""

    num_servers: int = 1
    """PolyBeast: local env server processes to start (ignored with --server-addresses)."""

    server_addresses: tuple[str, ...] = ()
    """PolyBeast: connect to these env servers (HOST:PORT or unix:/path) instead."""

    net_spin_us: int = 0
    """Microseconds a socket read busy-polls before blocking, here and in the env servers
    started here (0: off, best on small machines; ~100 cuts a loopback round trip from ~100
    to ~15 us). The BEAST_NET_SPIN_US variable, if set, overrides it."""

    step_timeout: float = 10.0
    """PolyBeast: seconds an env server may take over a reply (and a connect) before it is
    treated as dead (a hung or stopped one) and its connection reconnects."""

    unreachable_timeout: float = 60.0
    """PolyBeast: seconds with no env server reachable before the run fails (lost servers are
    reconnected until then; 0: fail at the first lost server)."""

    ray_address: str = ""
    """PolyBeast: place the env servers (with --actors remote: the --num-actors remote actors)
    on this Ray cluster instead ("auto", or the head's HOST:PORT; needs the [ray] extra). They
    bind (remote actors: the learner binds) a node's address and need the token
    ($BEAST_AUTH_TOKEN, else a fresh one per run); Ray restarts any that die."""

    servers_per_node: int = 1
    """PolyBeast with --ray-address: env servers on each node of the cluster (remote actors are
    spread over the nodes instead)."""

    server_cpus: float = 1.0
    """PolyBeast with --ray-address: CPUs Ray reserves for each env server (or remote actor)."""

    server_resources: str = ""
    """PolyBeast with --ray-address: custom Ray resources each env server (or remote actor)
    needs, as a JSON object, e.g. '{"env_node": 1}' to keep them on nodes started with that
    resource."""

    def ray_resources(self) -> dict[str, float]:
        """--server-resources as a dict (ValueError, one line, if it is not a JSON object of
        numbers)."""
        if not self.server_resources:
            return {}
        try:
            resources = json.loads(self.server_resources)
        except json.JSONDecodeError:
            resources = None
        _check(isinstance(resources, dict)
               and all(isinstance(v, (int, float)) and v >= 0 for v in resources.values()),
               "--server-resources must be a JSON object of numbers, got "
               f"{self.server_resources!r}")
        return {str(k): float(v) for k, v in resources.items()}

    def __post_init__(self) -> None:
        self.server_addresses = tuple(str(a) for a in self.server_addresses)
        _check(self.num_servers >= 1, "--num-servers must be >= 1")
        _check(self.actors in ("central", "remote"),
               f"--actors must be central or remote, got {self.actors!r}")
        _check(not self.actor_address.startswith("unix:"),
               "--actor-address must be HOST:PORT (remote actors connect over TCP)")
        _check_address(self.actor_address, "--actor-address", lowest_port=0)
        _check(not (self.ray_address and self.server_addresses),
               "--ray-address and --server-addresses are exclusive: Ray places the servers")
        _check(self.step_timeout > 0, "--step-timeout must be > 0 seconds")
        _check(self.unreachable_timeout >= 0, "--unreachable-timeout must be >= 0 seconds")
        _check(self.servers_per_node >= 1, "--servers-per-node must be >= 1")
        _check(self.server_cpus >= 0, "--server-cpus must be >= 0")
        self.ray_resources()
        for address in self.server_addresses:
            _check_address(address)
        _check(self.net_spin_us >= 0, "--net-spin-us must be >= 0")


_GROUPS = {"env": EnvConfig, "model": ModelConfig, "loss": LossConfig, "impact": ImpactConfig,
           "vmpo": VmpoConfig, "optim": OptimConfig, "run": RunConfig, "mono": MonoConfig, "eval": EvalConfig,
           "sync": SyncConfig, "poly": PolyConfig, "memory": MemoryConfig}


@document_fields
@dataclasses.dataclass
class Config:
    """Everything a run needs, in groups; saved as config.json in the run directory."""

    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
    """The environments (EnvConfig)."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    """The network (ModelConfig)."""

    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    """What every loss shares, and which loss (LossConfig)."""

    impact: ImpactConfig = dataclasses.field(default_factory=ImpactConfig)
    """IMPACT's own options (ImpactConfig; used with --loss impact)."""

    vmpo: VmpoConfig = dataclasses.field(default_factory=VmpoConfig)
    """V-MPO's own options (VmpoConfig; used with --loss vmpo)."""

    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    """The optimiser (OptimConfig)."""

    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    """Run control and data shape (RunConfig)."""

    mono: MonoConfig = dataclasses.field(default_factory=MonoConfig)
    """MonoBeast's runtime (MonoConfig)."""

    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    """Evaluation (EvalConfig)."""

    sync: SyncConfig = dataclasses.field(default_factory=SyncConfig)
    """Weight synchronisation (SyncConfig)."""

    poly: PolyConfig = dataclasses.field(default_factory=PolyConfig)
    """PolyBeast's runtime (PolyConfig)."""

    memory: MemoryConfig = dataclasses.field(default_factory=MemoryConfig)
    """The optional episodic memory (MemoryConfig; used with --episodic-memory)."""

    def __post_init__(self) -> None:
        recurrent = self.model.use_lstm or self.model.model_factory is not None
        _check(recurrent or not self.model.last_action_reward,
               "--last-action-reward feeds the LSTM core: add --use-lstm")
        _check(recurrent or not self.memory.episodic_memory,
               "--episodic-memory feeds its readout to the LSTM core: add --use-lstm")
        _check(not self.memory.episodic_memory or self.eval.eval_every is None,
               "--eval-every does not evaluate with the episodic memory yet (its evaluator "
               "process has no banks); evaluate the run with --eval RUN_DIR")
        _check(not self.memory.episodic_memory or self.run.device == "cpu",
               "--episodic-memory runs with --device cpu for now (its store, buffer and "
               "key-encoder training live on the CPU)")
        if self.poly.actors == "remote":
            _check(not self.memory.episodic_memory,
                   "--episodic-memory needs the learner's banks beside the actors: use "
                   "--actors central (remote actors have none yet)")
            _check(self.run.num_actors >= 1, "--actors remote needs --num-actors >= 1")
            _check(not (self.poly.ray_address and not self.poly.start_actors),
                   "--ray-address places the remote actors and --no-start-actors waits for "
                   "actors started by hand: use one of them")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, Any]]) -> "Config":
        unknown = set(data) - set(_GROUPS)
        _check(not unknown, f"unknown config groups {sorted(unknown)}")
        loss = data.get("loss", {})
        if "objective" in loss:  # saved before the field (and flag) was renamed to --loss
            data = {**data, "loss": {("loss" if k == "objective" else k): v
                                     for k, v in loss.items()}}
        return cls(**{name: _GROUPS[name](**data.get(name, {})) for name in _GROUPS})

    @property
    def steps_per_unroll(self) -> int:
        """Environment steps one slot carries (T x num_envs)."""
        return self.run.unroll_length * self.env.num_envs


def check_mono(config: Config) -> None:
    """MonoBeast's own cross-group rule: with actor processes, the slots must outnumber a
    batch so actors keep working while the learner reads (PolyBeast has no slots)."""
    run, mono = config.run, config.mono
    if run.num_actors > 0:
        owned = run.num_actors * mono.slots_per_actor
        _check(owned > run.batch_size,
               f"--batch-size {run.batch_size} needs more than {run.batch_size} slots in all "
               f"so actors keep working while the learner reads; raise --num-actors or "
               f"--slots-per-actor (now {run.num_actors} x {mono.slots_per_actor})")
