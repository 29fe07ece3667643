"""WPO networks for an environment spec, and the policies actors run."""

from typing import Any, Callable, NamedTuple

from acme import specs
from acme.agents.jax import actor_core as actor_core_lib
import jax
import jax.numpy as jnp
import numpy as np

from agents.wpo import config as config_lib
from wpo_jax import exploration
from wpo_jax import networks as networks_lib

# (params, key, observation [B, O]) -> action [B, D], as Acme's FeedForwardPolicy.
Policy = Callable[[Any, jax.Array, jax.Array], jax.Array]


class WPONetworks(NamedTuple):
  """The pure networks plus the sizes the learner needs to initialise them."""
  networks: networks_lib.WPONetworks
  observation_dim: int
  action_dim: int


def make_networks(environment_spec: specs.EnvironmentSpec,
                  config: config_lib.WPOConfig) -> WPONetworks:
  """Networks for flat observations [O] and actions in [-1, 1]^D (agents.environments)."""
  observation_dim = int(np.prod(environment_spec.observations.shape))
  action_dim = int(np.prod(environment_spec.actions.shape))
  if len(environment_spec.observations.shape) != 1 or len(environment_spec.actions.shape) != 1:
    raise ValueError('WPO expects flat observation and action vectors; got shapes '
                     f'{environment_spec.observations.shape} and '
                     f'{environment_spec.actions.shape}: wrap the environment with '
                     'agents.environments (it concatenates Control Suite observations).')
  actions = environment_spec.actions
  if not (np.all(getattr(actions, 'minimum', -np.inf) == -1.0) and
          np.all(getattr(actions, 'maximum', np.inf) == 1.0)):
    raise ValueError('WPO expects actions bounded to [-1, 1] (its critic clips to that box); '
                     f'got {actions!r}. Wrap the environment with agents.environments, which '
                     'rescales a task\'s action bounds to [-1, 1].')
  return WPONetworks(
      networks=networks_lib.make_networks(action_dim, config.policy_layers,
                                          config.critic_layers, config.init_scale,
                                          config.min_scale, config.policy,
                                          config.num_components),
      observation_dim=observation_dim,
      action_dim=action_dim)


def make_policy(networks: WPONetworks, evaluation: bool) -> Policy:
  """A sample from π(·|s) for training actors; its mode for evaluation.

  The mode is the mean for a Gaussian, tanh(μ) for a tanh-Gaussian and the highest-density
  action for a mixture (`wpo_jax.distributions`).

  Actions are clipped to the [-1, 1] box: the environment would clip them anyway, and replay
  then holds the actions that were executed.
  """

  def policy(params, key, observation):
    distribution = networks.networks.policy.apply(params, observation)
    action = distribution.mode() if evaluation else distribution.sample(key, 1)[0]
    return jnp.clip(action, -1.0, 1.0)

  return policy


class NoiseState(NamedTuple):
  """A training actor's state within an episode: its noise sequence and the next step's index."""
  noise: jax.Array  # [horizon, D], coloured along the horizon.
  step: jax.Array  # int32 scalar.


def make_behaviour_policy(networks: WPONetworks, config: config_lib.WPOConfig):
  """What training actors run (`WPOBuilder.make_actor` takes either kind).

  With `config.exploration_noise_exponent` 0: `make_policy(networks, evaluation=False)`,
  independent draws from π. Otherwise an Acme `ActorCore` whose state holds a coloured noise
  sequence, drawn afresh at each episode's start (`GenericActor.observe_first` calls `init`):
  step t acts with π's draw for the sequence's t-th noise, clipped to the box as above.
  """
  if config.exploration_noise_exponent == 0:
    return make_policy(networks, evaluation=False)
  horizon, exponent = config.exploration_noise_horizon, config.exploration_noise_exponent

  def init(key: jax.Array) -> NoiseState:
    return NoiseState(exploration.coloured_noise(key, horizon, (networks.action_dim,), exponent),
                      jnp.zeros((), jnp.int32))

  def select_action(params, observation: jax.Array, state: NoiseState):
    distribution = networks.networks.policy.apply(params, observation[None])  # [1, D] fields
    action = distribution.from_noise(state.noise[state.step % horizon][None])[0]
    return jnp.clip(action, -1.0, 1.0), NoiseState(state.noise, state.step + 1)

  return actor_core_lib.ActorCore(init=init, select_action=select_action,
                                  get_extras=lambda state: None)
