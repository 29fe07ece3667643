"""Every method of the comparison harness as the same set of Acme parts.

WPO and MPO come from `agents.wpo` (the same critic and learner, differing only in the
policy-improvement step); SAC, TD3 and D4PG are the installed dm-acme 0.4.0 JAX agents, built from
their own builders. `make_agent_parts` gives each one's builder, networks and acting policies with
the same hidden-layer sizes, so a harness can run them all through one loop.
"""

import dataclasses
from typing import Any, Callable, NamedTuple, Tuple

import agents  # noqa: F401  (the hook that lets acme import; see agents/acme_compat.py)
from acme import specs
from acme.agents.jax import builders
import jax.numpy as jnp

from agents import wpo
from wpo_jax.learner_config import check_field

METHODS = ('wpo', 'mpo', 'sac', 'td3', 'd4pg')

# (params, key, observation [B, O]) -> action [B, D].
Policy = Callable[[Any, Any, Any], Any]


class AgentParts(NamedTuple):
  """What a local loop needs to run one method."""
  builder: builders.ActorLearnerBuilder
  networks: Any
  behaviour_policy: Policy
  evaluation_policy: Policy
  min_replay_size: int
  samples_per_insert: float
  # Transitions one learner.step() consumes: the batch size times the SGD steps it fuses.
  transitions_per_learner_step: int


@dataclasses.dataclass(frozen=True)
class CommonSettings:
  """Settings shared by every method so that runs differ only in the algorithm.

  Validated when built (a ValueError names the field), so a preset, a command line and a method
  variant's override are all checked by the same rules.
  """
  hidden_sizes: Tuple[int, ...] = (256, 256, 256)
  batch_size: int = 256
  samples_per_insert: float = 32.0
  min_replay_size: int = 1000
  discount: float = 0.99

  def __post_init__(self):
    object.__setattr__(self, 'hidden_sizes', tuple(self.hidden_sizes))
    check_field(len(self.hidden_sizes) >= 1 and min(self.hidden_sizes) >= 1, 'hidden_sizes',
                'a non-empty list of positive layer sizes', self.hidden_sizes)
    check_field(self.batch_size >= 1, 'batch_size', 'an integer >= 1', self.batch_size)
    check_field(self.samples_per_insert > 0, 'samples_per_insert', '> 0', self.samples_per_insert)
    check_field(self.min_replay_size >= 1, 'min_replay_size', 'an integer >= 1',
                self.min_replay_size)
    check_field(0.0 <= self.discount <= 1.0, 'discount', 'in [0, 1]', self.discount)


def validate_method(method: str) -> None:
  if method not in METHODS:
    raise ValueError(f'Unknown method {method!r}; valid methods: {", ".join(METHODS)}.')


def _clipped(policy: Policy) -> Policy:
  """Actions clipped to the canonical [-1, 1] box, so replay holds what was executed."""
  return lambda params, key, observation: jnp.clip(policy(params, key, observation), -1.0, 1.0)


def single_process_replay(config):
  """Replay settings for an actor and a learner that share one thread.

  Reverb's rate limiter must never block there: a blocked insert or sample would wait for the
  very thread it blocks. As in Acme's local agents, the table admits sampling from one item with
  unbounded slack, and `acme.agents.agent.Agent` enforces min_replay_size and samples_per_insert
  by counting observations instead.
  """
  return dataclasses.replace(config, min_replay_size=1,
                             samples_per_insert_tolerance_rate=float('inf'))


def wpo_agent_parts(config: wpo.WPOConfig, spec: specs.EnvironmentSpec,
                    logger_fn: Callable[[], Any], single_process: bool = True) -> AgentParts:
  """WPO (or MPO, by `config.policy_improvement`) with its own config."""
  networks = wpo.make_networks(spec, config)
  builder = wpo.WPOBuilder(single_process_replay(config) if single_process else config,
                           logger_fn=logger_fn)
  return AgentParts(builder, networks, wpo.make_behaviour_policy(networks, config),
                    wpo.make_policy(networks, evaluation=True), config.min_replay_size,
                    config.samples_per_insert, config.batch_size * config.num_sgd_steps_per_step)


def make_agent_parts(method: str, settings: CommonSettings, wpo_config: wpo.WPOConfig,
                     spec: specs.EnvironmentSpec, logger_fn: Callable[[], Any],
                     single_process: bool = True) -> AgentParts:
  """Builder, networks and policies of `method` for `spec`, with the shared `settings`.

  `wpo_config` supplies WPO's and MPO's own settings (its network, batch and replay fields are
  replaced by `settings`). The arguments come in the order of `runner.experiment.PartsFactory`
  after the first three, so a partial over those is one. With `single_process`, replay tables never block (see
  `single_process_replay`); the caller's loop must enforce the replay ratio.
  """
  validate_method(method)
  layers = tuple(settings.hidden_sizes)
  shared = dict(batch_size=settings.batch_size, samples_per_insert=settings.samples_per_insert,
                min_replay_size=settings.min_replay_size, discount=settings.discount)
  adapt = single_process_replay if single_process else (lambda c: c)

  if method in ('wpo', 'mpo'):
    # `wpo_config.policy` is WPO's head; MPO's loss is for a Gaussian policy.
    policy = wpo_config.policy if method == 'wpo' else 'gaussian'
    config = dataclasses.replace(wpo_config, policy_layers=layers, critic_layers=layers,
                                 policy_improvement=method, policy=policy, **shared)
    return wpo_agent_parts(config, spec, logger_fn, single_process)
  if method == 'sac':
    from acme.agents.jax import sac  # pylint: disable=g-import-not-at-top
    config = sac.SACConfig(target_entropy=sac.target_entropy_from_env_spec(spec), **shared)
    networks = sac.make_networks(spec, layers)
    builder = sac.SACBuilder(adapt(config), logger_fn=logger_fn)
    behaviour = _clipped(sac.apply_policy_and_sample(networks))
    evaluation = _clipped(sac.apply_policy_and_sample(networks, eval_mode=True))
  elif method == 'td3':
    from acme.agents.jax import td3  # pylint: disable=g-import-not-at-top
    config = td3.TD3Config(**shared)
    networks = td3.make_networks(spec, layers)
    builder = td3.TD3Builder(adapt(config), logger_fn=logger_fn)
    behaviour = td3.get_default_behavior_policy(networks, spec.actions, config.sigma)
    evaluation = td3.get_default_behavior_policy(networks, spec.actions, 0.0)
  else:
    from acme.agents.jax import d4pg  # pylint: disable=g-import-not-at-top
    config = d4pg.D4PGConfig(**shared)
    networks = d4pg.make_networks(spec, layers, layers)
    builder = d4pg.D4PGBuilder(adapt(config), logger_fn=logger_fn)
    behaviour = _clipped(d4pg.get_default_behavior_policy(networks, config))
    evaluation = _clipped(d4pg.get_default_eval_policy(networks))
  return AgentParts(builder, networks, behaviour, evaluation, settings.min_replay_size,
                    settings.samples_per_insert, settings.batch_size)
