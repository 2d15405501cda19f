"""`python -m beast.poly.actor`: a remote actor, K envs and a CPU copy of the policy.

It steps its envs with local batched inference (beast.acting.UnrollWorker, exactly as a
MonoBeast actor process does), sends each whole [T+1, K] unroll to the learner as one typed
UNROLL frame, and takes new weights only when the learner's sync controller sends them
(csrc/net/wire.h, frames 12-14: the learner's end is csrc/net/actor_server.h):

    client = ActorClient(learner, K, T, n)          # HELLO [-> CHALLENGE -> AUTH] -> ACTOR_SPEC
    version = load(client.poll_weights(timeout))    # never act with the random init
    loop:
        worker.fill(unroll, version)                # T new steps
        client.send_unroll(unroll)
        version = load(client.poll_weights(0.0))    # the newest weights that came, if any

Start it with the learner's env and model flags (`polybeast --actors remote` starts
--num-actors of these itself; with --no-start-actors it waits for ones started by hand):

    python -m beast.poly.actor --learner 127.0.0.1:4010 --env CartPole-v1 --num-envs 64 \\
        --unroll-length 32 --seed 7

The learner checks each unroll against the rollout schema and the actor checks the learner's
K, T and weight count at the handshake, so an actor started with other flags stops with one
line. A lost learner is reconnected to (a fresh session: the unfinished unroll is dropped)
until --reconnect-timeout passes; a refused token, a refused unroll or a bad WEIGHTS frame
(wrong size or an old version) stop the actor at once with the reason (exit 1). The token
comes from BEAST_AUTH_TOKEN, as for env servers.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from beast.acting import UnrollWorker
from beast.config import EnvConfig, ModelConfig
from beast.envs.make import check_env_config, make_vector_env_from_config
from beast.flags import build_parser, group_from_args
from beast.models.factory import build_configured_model
from beast.rollout import RolloutSpec
from beast.poly._core import ActorClient
from beast.poly.env_server import AUTH_TOKEN_ENV, die_with_parent


CONNECT_TIMEOUT = 30.0  # --timeout: seconds for a connect and handshake, and for an unroll sent
RECONNECT_TIMEOUT = 60.0  # --reconnect-timeout: seconds to keep trying a lost learner


class FatalActorError(Exception):
    """The learner refused this actor, or sent what it must not: reconnecting cannot help."""


def weights_size(model: nn.Module) -> int:
    """The float32 count of a WEIGHTS blob: every parameter, flattened in model order."""
    return sum(p.numel() for p in model.parameters())


def load_weights(model: nn.Module, weights: np.ndarray) -> None:
    with torch.no_grad():
        nn.utils.vector_to_parameters(torch.from_numpy(weights), model.parameters())


class RemoteActor:
    """The actor's state across learner sessions: its envs, policy copy and unroll buffer."""

    def __init__(self, env: EnvConfig, model: ModelConfig, unroll_length: int, seed: int) -> None:
        torch.set_num_threads(1)
        self.envs = make_vector_env_from_config(env)
        self.model = build_configured_model(self.envs.single_observation_space,
                                            self.envs.single_action_space, model)
        self.unroll_length = unroll_length
        self.worker = UnrollWorker(self.envs, self.model, unroll_length, seed)
        self.unroll = RolloutSpec.build(self.envs.single_observation_space,
                                        self.model).allocate((unroll_length + 1, env.num_envs))
        self.size = weights_size(self.model)
        self.unrolls_sent = 0

    def connect(self, learner: str, timeout: float, token: str | None) -> ActorClient:
        try:
            return ActorClient(learner, self.envs.num_envs, self.unroll_length, self.size,
                               timeout=timeout, auth_token=token)
        except RuntimeError as exc:
            if "already has its" in str(exc):  # our lost session may not be freed yet: retry
                raise ConnectionError(str(exc)) from None
            raise FatalActorError(str(exc)) from None
        except (ValueError, PermissionError) as exc:  # other flags, a refused token
            raise FatalActorError(str(exc)) from None

    def session(self, client: ActorClient, timeout: float) -> None:
        """Act for one learner connection until it breaks (ConnectionError / TimeoutError;
        a learner that sends no first weights, or acks no unroll, within `timeout` seconds is
        lost too: stopped or hung)."""
        version = self._take(client.poll_weights(timeout))
        if version is None:
            raise TimeoutError(f"no weights from the learner within {timeout:g} s")
        while True:
            self.worker.fill(self.unroll, version)
            self._send(client)
            newest = self._take(client.poll_weights(0.0))
            version = newest if newest is not None else version

    def _send(self, client: ActorClient) -> None:
        try:
            client.send_unroll(self.unroll)
        except RuntimeError as exc:  # the learner's ERROR: it refused this unroll
            raise FatalActorError(str(exc)) from None
        self.unrolls_sent += 1

    def _take(self, weights: tuple[int, np.ndarray] | None) -> int | None:
        if weights is None:
            return None
        version, blob = weights
        load_weights(self.model, blob)
        return version


def run(actor: RemoteActor, learner: str, timeout: float, reconnect_timeout: float,
        token: str | None, log: Callable[[str], None] = print) -> None:
    """Sessions with the learner until it is unreachable for `reconnect_timeout` seconds
    (then returns) or a fatal error (FatalActorError)."""
    lost_since = time.monotonic()
    delay = 0.05
    while True:
        try:
            client = actor.connect(learner, timeout, token)
        except (ConnectionError, TimeoutError, OSError):
            if time.monotonic() - lost_since >= reconnect_timeout:
                return
            time.sleep(delay)
            delay = min(2.0, delay * 2)
            continue
        delay = 0.05
        try:
            actor.session(client, timeout)
        except (ConnectionError, TimeoutError) as exc:
            text = " ".join(str(exc).split())
            if text.startswith("protocol error") or "refused a WEIGHTS frame" in text:
                raise FatalActorError(text) from None
            log(f"beast actor: lost the learner ({text}); reconnecting")
        except RuntimeError as exc:  # the learner's last word (it closed us, saying why)
            raise FatalActorError(" ".join(str(exc).split())) from None
        finally:
            client.close()
        lost_since = time.monotonic()


def build_actor_parser() -> argparse.ArgumentParser:
    parser = build_parser("python -m beast.poly.actor", __doc__.split("\n")[0],
                          only=("env", "model"))
    actor = parser.add_argument_group("remote actor")
    actor.add_argument("--learner", required=True, help="the learner's actor address, HOST:PORT")
    actor.add_argument("--unroll-length", type=int, default=32, help="T, as the learner's")
    actor.add_argument("--seed", type=int, default=0, help="seeds the envs and the sampling")
    actor.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT,
                       help="seconds for the connect and handshake, and for each unroll sent")
    actor.add_argument("--reconnect-timeout", type=float, default=RECONNECT_TIMEOUT,
                       help="seconds to keep trying to reach a lost (or not yet started) learner")
    return parser


def main(argv: list[str] | None = None) -> int:
    if not die_with_parent():
        return 0
    parser = build_actor_parser()
    args = parser.parse_args(argv)
    try:
        env, model = group_from_args(EnvConfig, args), group_from_args(ModelConfig, args)
        check_env_config(env)
        if args.unroll_length < 1:
            raise ValueError("--unroll-length must be >= 1")
    except ValueError as exc:
        parser.error(str(exc))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    token = os.environ.get(AUTH_TOKEN_ENV)
    try:
        actor = RemoteActor(env, model, args.unroll_length, args.seed)
        run(actor, args.learner, args.timeout, args.reconnect_timeout, token)
    except FatalActorError as exc:
        print(f"beast actor: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"beast actor: the learner at {args.learner} is gone; stopping after "
          f"{actor.unrolls_sent} unrolls", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
