"""Flax (linen) networks for WPO: layer-normed MLP torso, Gaussian policy head, critic.

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


class GaussianPolicy(nn.Module):
  """Observation [..., O] → DiagonalGaussian with fields [..., D].

  σ = softplus(x) · init_scale / softplus(0) + min_scale, so σ = init_scale + min_scale at x = 0.
  The mean layer starts near zero so the initial policy is centred in the action box.
  """
  action_dim: int
  hidden_sizes: Sequence[int] = DEFAULT_POLICY_LAYERS
  init_scale: float = 0.5
  min_scale: float = 1e-6

  @nn.compact
  def __call__(self, observation: jax.Array) -> distributions.DiagonalGaussian:
    h = LayerNormMLP(self.hidden_sizes)(observation)
    small_init = nn.initializers.variance_scaling(1e-4, 'fan_in', 'truncated_normal')
    mean = nn.Dense(self.action_dim, kernel_init=small_init, name='mean')(h)
    pre_scale = nn.Dense(self.action_dim, kernel_init=small_init, name='pre_scale')(h)
    stddev = (jax.nn.softplus(pre_scale) * self.init_scale / jax.nn.softplus(0.0) +
              self.min_scale)
    return distributions.DiagonalGaussian(mean, stddev)


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
                  min_scale: float = 1e-6) -> WPONetworks:
  return WPONetworks(
      policy=GaussianPolicy(action_dim, tuple(policy_layers), init_scale, min_scale),
      critic=Critic(tuple(critic_layers)))
