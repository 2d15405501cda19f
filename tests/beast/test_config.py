"""Config: every field documented (in --help and in help()) and exposed as a flag; validation
says why; JSON round trip."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import pydoc
import textwrap

import pytest

import beast.config

from beast.config import (Config, ConfigError, EnvConfig, EvalConfig, ImpactConfig, LossConfig,
                          ModelConfig, MonoConfig, OptimConfig, PolyConfig, RunConfig, SyncConfig,
                          VmpoConfig, check_mono)
from beast.flags import build_parser, config_from_args, field_docs
from beast.memory.config import MemoryConfig

GROUPS = (EnvConfig, ModelConfig, LossConfig, ImpactConfig, VmpoConfig, OptimConfig, RunConfig,
          MonoConfig, EvalConfig, SyncConfig, PolyConfig, MemoryConfig)


@pytest.mark.parametrize("cls", GROUPS)
def test_every_field_has_a_docstring_and_a_flag(cls: type) -> None:
    docs = field_docs(cls)
    options = build_parser("test")._option_string_actions
    for field in dataclasses.fields(cls):
        assert docs.get(field.name), f"{cls.__name__}.{field.name} has no docstring"
        assert "--" + field.name.replace("_", "-") in options


# Every dataclass beast.config defines or re-exports, found rather than listed, so a new group
# is covered by the help() test below without editing it.
CONFIG_CLASSES = tuple(value for value in vars(beast.config).values()
                       if isinstance(value, type) and dataclasses.is_dataclass(value))


def test_help_covers_every_config_dataclass() -> None:
    assert set(CONFIG_CLASSES) == {*GROUPS, Config}


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda cls: cls.__name__)
def test_help_shows_each_field_with_its_default_and_docstring(cls: type) -> None:
    """help(cls) shows the class docstring first, then each field's name, type, default and
    the start of the docstring written under it in the source (the --help text)."""
    rendered = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    text = " ".join(" ".join(line.lstrip(" |") for line in rendered.splitlines()).split())
    class_doc = ast.get_docstring(ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0])
    assert class_doc, f"{cls.__name__} has no class docstring"
    assert pydoc.getdoc(cls).startswith(inspect.cleandoc(class_doc))
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        doc = docs.get(field.name)
        assert doc, f"{cls.__name__}.{field.name} has no docstring in the source"
        default = (repr(field.default) if field.default_factory is dataclasses.MISSING
                   else f"{field.default_factory.__name__}()")
        assert f"{field.name}: {field.type} = {default}" in text, \
            f"help({cls.__name__}) does not show {field.name}'s type and default"
        first_words = " ".join(doc.split()[:8])
        assert first_words in text, f"help({cls.__name__}) does not show {field.name}'s docstring"


def test_flags_override_base_and_defaults_stay() -> None:
    parser = build_parser("test")
    args = parser.parse_args(["--num-envs", "8", "--total-steps", "2e5", "--hidden-sizes", "32",
                              "32", "--target-return", "150"])
    base = Config.from_dict({"loss": {"discount": 0.9}})
    config = config_from_args(args, base)
    assert config.env.num_envs == 8
    assert config.run.total_steps == 200_000
    assert config.model.hidden_sizes == (32, 32)
    assert config.run.target_return == 150.0
    assert config.loss.discount == 0.9  # from base, not overridden
    assert config.optim.learning_rate == OptimConfig().learning_rate


def test_skipped_groups_get_no_flags_and_string_tuples_parse() -> None:
    assert "--num-servers" not in build_parser("mono", skip=("poly",))._option_string_actions
    assert "--slots-per-actor" not in build_parser("poly", skip=("mono",))._option_string_actions
    args = build_parser("poly", skip=("mono",)).parse_args(
        ["--server-addresses", "127.0.0.1:1", "unix:/x"])
    assert config_from_args(args).poly.server_addresses == ("127.0.0.1:1", "unix:/x")


def test_json_round_trip() -> None:
    config = Config(model=ModelConfig(hidden_sizes=(5, 6)), run=RunConfig(num_actors=0))
    assert Config.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("make, message", [
    (lambda: EnvConfig(num_envs=0), "--num-envs must be >= 1"),
    (lambda: LossConfig(discount=1.5), "--discount must be in"),
    (lambda: LossConfig(reduction="max"), "--reduction"),
    (lambda: LossConfig(loss="ppo"), "--loss must be impala, impact or vmpo"),
    (lambda: ImpactConfig(impact_clip_epsilon=0), "--impact-clip-epsilon must be > 0"),
    (lambda: ImpactConfig(impact_target_period=0), "--impact-target-period must be >= 1"),
    (lambda: ImpactConfig(impact_kl_coef=-1), "--impact-kl-coef must be >= 0"),
    (lambda: ImpactConfig(reuse_max_uses=0), "--reuse-max-uses must be >= 1"),
    (lambda: VmpoConfig(vmpo_alpha_init=0), "--vmpo-alpha-init must be > 0"),
    (lambda: VmpoConfig(vmpo_epsilon_alpha_sigma=-1e-5), "--vmpo-epsilon-alpha-sigma must be > 0"),
    (lambda: VmpoConfig(vmpo_target_period=0), "--vmpo-target-period must be >= 1"),
    (lambda: OptimConfig(learning_rate=-1), "--learning-rate must be > 0"),
    (lambda: ModelConfig(activation="gelu"), "--activation"),
    (lambda: RunConfig(device="tpu"), "--device"),
    (lambda: check_mono(Config(run=RunConfig(num_actors=1, batch_size=2),
                               mono=MonoConfig(slots_per_actor=2))), "raise --num-actors"),
])
def test_invalid_values_are_rejected_with_reasons(make, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_each_loss_has_its_own_help_group_and_old_configs_name_the_loss() -> None:
    help_text = build_parser("test").format_help()
    assert "IMPACT (--loss impact; ignored otherwise)" in help_text
    assert "V-MPO (--loss vmpo; ignored otherwise)" in help_text
    assert "--objective" not in help_text
    args = build_parser("test").parse_args(["--loss", "vmpo", "--vmpo-eta-init", "2",
                                            "--reuse-buffer-size", "16"])
    config = config_from_args(args)
    assert (config.loss.loss, config.vmpo.vmpo_eta_init) == ("vmpo", 2.0)
    assert config.impact.reuse_buffer_size == 16
    # a config.json saved before the field was renamed (objective -> loss) still loads
    old = Config.from_dict({"loss": {"objective": "impala", "discount": 0.9}})
    assert old.loss == LossConfig(loss="impala", discount=0.9)


def test_unknown_group_is_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown config groups"):
        Config.from_dict({"optimiser": {}})


def test_env_server_flags_are_generated_from_env_config() -> None:
    """A launcher passes its EnvConfig to env servers as flags; a new field needs no edit."""
    from beast.flags import group_flags, group_from_args

    config = EnvConfig("ALE/Pong-v5", num_envs=7, env_backend="envpool", episodic_life=True,
                       sticky_actions=False)
    parser = build_parser("env_server", only=("env",))
    assert group_from_args(EnvConfig, parser.parse_args(group_flags(config))) == config
    assert "--learning-rate" not in parser.format_help()
