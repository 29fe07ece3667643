"""Policy distributions as pytrees: sample, log_prob, mode and WPO preconditioning.

A distribution is a NamedTuple of arrays, so it can cross `jit`, `vmap` and `scan` boundaries.
Every class offers:
  sample(key, num_samples) -> [num_samples, ..., D] actions (no reparameterisation needed by WPO),
  log_prob(actions [..., D]) -> [...], evaluated independently per action,
  mode() -> [..., D], the action used for evaluation,
  preconditioned() -> the same distribution with rescaled gradients (approximate F⁻¹).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from wpo_jax import losses

_HALF_LOG_TWO_PI = 0.5 * jnp.log(2.0 * jnp.pi)


class DiagonalGaussian(NamedTuple):
  """N(mean, diag(stddev²)); both fields [..., D]."""
  mean: jax.Array
  stddev: jax.Array

  def sample(self, key: jax.Array, num_samples: int) -> jax.Array:
    """[num_samples, ..., D] draws."""
    noise = jax.random.normal(key, (num_samples,) + self.mean.shape, self.mean.dtype)
    return self.mean + self.stddev * noise

  def log_prob(self, actions: jax.Array) -> jax.Array:
    """[...] log-densities of actions [..., D] (broadcast against the batch shape)."""
    z = (actions - self.mean) / self.stddev
    return jnp.sum(-0.5 * jnp.square(z) - jnp.log(self.stddev) - _HALF_LOG_TWO_PI, axis=-1)

  def mode(self) -> jax.Array:
    return self.mean

  def preconditioned(self) -> 'DiagonalGaussian':
    """Gradients through μ scaled by σ², through σ by σ²/2 (inverse Gaussian Fisher)."""
    return DiagonalGaussian(*losses.gaussian_natural_gradient_scaling(self.mean, self.stddev))
