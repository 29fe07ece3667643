"""Flax (linen) networks for WPO: layer-normed MLP torso, policy heads, critic.

Observations are flat float vectors [..., O]; actions are [..., D]. Any number of leading axes is
accepted, so the same critic scores [B] state-action pairs and [N, B] sampled actions.
"""

import itertools
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from wpo_jax import distributions

# Reference network sizes (the public WPO launcher).
DEFAULT_POLICY_LAYERS = (256, 256, 256)
DEFAULT_CRITIC_LAYERS = (256, 256, 256)

# Policy heads `make_networks` builds, by name.
POLICIES = ('gaussian', 'mixture', 'tanh_gaussian')


class LayerNormMLP(nn.Module):
  """Dense → LayerNorm → tanh, then Dense → elu for each further layer.

  Normalising the first layer keeps the scale of unnormalised Control Suite observations from
  dominating training; tanh bounds it. The first layer takes several inputs [..., F_i] whose
  leading axes broadcast, and equals one Dense on their concatenation: a critic scoring N sampled
  actions [N, B, D] in states [B, O] computes the observation part once per state.
  """
  hidden_sizes: Sequence[int]

  @nn.compact
  def __call__(self, *inputs: jax.Array) -> jax.Array:
    init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')
    sizes = [x.shape[-1] for x in inputs]
    kernel = self.param('input_kernel', init, (sum(sizes), self.hidden_sizes[0]))
    bias = self.param('input_bias', nn.initializers.zeros_init(), (self.hidden_sizes[0],))
    offsets = [0] + list(itertools.accumulate(sizes))
    x = bias
    for inp, start, stop in zip(inputs, offsets[:-1], offsets[1:]):
      x = x + inp @ kernel[start:stop]
    x = jnp.tanh(nn.LayerNorm()(x))
    for size in self.hidden_sizes[1:]:
      x = nn.elu(nn.Dense(size, kernel_init=init)(x))
    return x


def _small_init() -> nn.initializers.Initializer:
  """Output-layer kernels start near zero, so initial policies do not depend on the state."""
  return nn.initializers.variance_scaling(1e-4, 'fan_in', 'truncated_normal')


def _stddev(pre_scale: jax.Array, init_scale: float, min_scale: float) -> jax.Array:
  """σ = softplus(x) · init_scale / softplus(0) + min_scale: init_scale + min_scale at x = 0."""
  return jax.nn.softplus(pre_scale) * init_scale / jax.nn.softplus(0.0) + min_scale


class GaussianPolicy(nn.Module):
  """Observation [..., O] → DiagonalGaussian with fields [..., D].

  σ = softplus(x) · init_scale / softplus(0) + min_scale, so σ = init_scale + min_scale at x = 0.
  The mean layer starts near zero so the initial policy is centred in the action box.
  """
  action_dim: int
  hidden_sizes: Sequence[int] = DEFAULT_POLICY_LAYERS
  init_scale: float = 0.5
  min_scale: float = 1e-6

  def gaussian(self, observation: jax.Array) -> distributions.DiagonalGaussian:
    h = LayerNormMLP(self.hidden_sizes)(observation)
    mean = nn.Dense(self.action_dim, kernel_init=_small_init(), name='mean')(h)
    pre_scale = nn.Dense(self.action_dim, kernel_init=_small_init(), name='pre_scale')(h)
    return distributions.DiagonalGaussian(mean, _stddev(pre_scale, self.init_scale,
                                                        self.min_scale))

  @nn.compact
  def __call__(self, observation: jax.Array) -> distributions.DiagonalGaussian:
    return self.gaussian(observation)


class TanhGaussianPolicy(GaussianPolicy):
  """Observation [..., O] → TanhGaussian: GaussianPolicy's parameters for u, actions tanh(u).

  The initial policy is centred (tanh(0) = 0) with pre-squash σ = init_scale.
  """

  @nn.compact
  def __call__(self, observation: jax.Array) -> distributions.TanhGaussian:
    return distributions.TanhGaussian(*self.gaussian(observation))


def _spread_means(num_components: int, action_dim: int, spread: float):
  """Bias initialiser for [K·D] component means: the centres of K equal bins of [−s, s].

  Distinct starting means break the symmetry between components, which would otherwise receive
  identical updates (K=2: ±s/2; K=3: −2s/3, 0, 2s/3; K=1: 0). Every dimension gets the same
  centre, so the components start on the box's diagonal.
  """

  def init(key, shape, dtype=jnp.float32):
    del key
    centres = spread * ((2.0 * jnp.arange(num_components) + 1.0) / num_components - 1.0)
    return jnp.repeat(centres, action_dim).reshape(shape).astype(dtype)

  return init


class MixtureGaussianPolicy(nn.Module):
  """Observation [..., O] → MixtureGaussian: logits [..., K], mean and stddev [..., K, D].

  Weights start uniform; component means start spread over [−mean_spread, mean_spread] (see
  `_spread_means`); σ as in GaussianPolicy, per component.
  """
  action_dim: int
  num_components: int
  hidden_sizes: Sequence[int] = DEFAULT_POLICY_LAYERS
  init_scale: float = 0.5
  min_scale: float = 1e-6
  mean_spread: float = 1.0

  @nn.compact
  def __call__(self, observation: jax.Array) -> distributions.MixtureGaussian:
    h = LayerNormMLP(self.hidden_sizes)(observation)
    shape = h.shape[:-1] + (self.num_components, self.action_dim)
    size = self.num_components * self.action_dim
    logits = nn.Dense(self.num_components, kernel_init=_small_init(), name='logits')(h)
    mean = nn.Dense(size, kernel_init=_small_init(), name='mean',
                    bias_init=_spread_means(self.num_components, self.action_dim,
                                            self.mean_spread))(h)
    pre_scale = nn.Dense(size, kernel_init=_small_init(), name='pre_scale')(h)
    return distributions.MixtureGaussian(
        logits, mean.reshape(shape),
        _stddev(pre_scale.reshape(shape), self.init_scale, self.min_scale))


class Critic(nn.Module):
  """(observation [..., O], action [..., D]) → Q [...]."""
  hidden_sizes: Sequence[int] = DEFAULT_CRITIC_LAYERS

  @nn.compact
  def __call__(self, observation: jax.Array, action: jax.Array) -> jax.Array:
    h = LayerNormMLP(self.hidden_sizes)(observation, action)
    return jnp.squeeze(nn.Dense(1)(h), axis=-1)


class WPONetworks(NamedTuple):
  policy: nn.Module
  critic: nn.Module


def make_networks(action_dim: int,
                  policy_layers: Sequence[int] = DEFAULT_POLICY_LAYERS,
                  critic_layers: Sequence[int] = DEFAULT_CRITIC_LAYERS,
                  init_scale: float = 0.5,
                  min_scale: float = 1e-6,
                  policy: str = 'gaussian',
                  num_components: int = 2) -> WPONetworks:
  """Policy head by name (one of POLICIES; num_components is used by 'mixture') and a critic."""
  layers = tuple(policy_layers)
  if policy == 'gaussian':
    policy_network = GaussianPolicy(action_dim, layers, init_scale, min_scale)
  elif policy == 'tanh_gaussian':
    policy_network = TanhGaussianPolicy(action_dim, layers, init_scale, min_scale)
  elif policy == 'mixture':
    policy_network = MixtureGaussianPolicy(action_dim, num_components, layers, init_scale,
                                           min_scale)
  else:
    raise ValueError(f'Unknown policy {policy!r}; valid policies: {POLICIES}.')
  return WPONetworks(policy=policy_network, critic=Critic(tuple(critic_layers)))
