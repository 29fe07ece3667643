"""Optional variants of the learner's policy term (`LearnerConfig.policy_loss_states`,
`dq_da_transform`, `entropy_weight`, `mean_box_penalty`); the defaults leave the paper's update
unchanged."""

from typing import Any, Tuple

import jax
import jax.numpy as jnp

# batch_normalise divides ∇aQ by max(RMS, this): a flat critic (RMS ≈ 0) is not blown up to unit
# scale from rounding noise alone.
MIN_DQ_DA_RMS = 1e-6


def policy_states(batch: Any, which: str) -> Tuple[jax.Array, jax.Array]:
  """The states the policy loss is taken at, and each one's weight in its mean.

  batch: a `wpo_jax.learning.Transition`.

  's': the batch's states, weight 1. 's_and_next': those and the bootstrap states s' [2B, O];
  an s' with discount D = 0 follows a terminal, where the policy never acts, and gets weight 0;
  the weights are scaled to average 1, so a plain mean of (weight × per-state term) is the mean
  over the states that count.

  Returns:
    (observation [S, O], weight [S]) with S = B or 2B.
  """
  if which == 's':
    return batch.observation, jnp.ones(batch.observation.shape[:1], batch.observation.dtype)
  observation = jnp.concatenate([batch.observation, batch.next_observation], axis=0)
  counted = jnp.concatenate([jnp.ones_like(batch.discount),
                             (batch.discount > 0).astype(batch.discount.dtype)])
  return observation, counted * counted.shape[0] / jnp.sum(counted)


def transform_dq_da(dq_da: jax.Array, weight: jax.Array, transform: str) -> jax.Array:
  """∇aQ [N, S, D] as the WPO term uses it (see LearnerConfig.dq_da_transform).

  'batch_normalise' divides by √(weighted mean of g² over samples, states and dimensions), with
  the per-state `weight` [S] of `policy_states`, floored at MIN_DQ_DA_RMS: one scale for the
  whole batch, so the directions across states and dimensions are kept.
  """
  if transform == 'none':
    return dq_da
  if transform == 'cube_root':
    return jnp.cbrt(dq_da)
  mean_square = jnp.mean(weight[None, :, None] * jnp.square(dq_da))
  return dq_da / jnp.maximum(jnp.sqrt(mean_square), MIN_DQ_DA_RMS)


def log_scale_entropy(distribution: Any) -> jax.Array:
  """Σ_d log σ_d per state: a Gaussian's entropy less its constant D·½log(2πe), [S].

  For a tanh-Gaussian it is the pre-squash Gaussian's; for a mixture the mean over its
  components (its own entropy has no closed form).
  """
  log_scale = jnp.sum(jnp.log(distribution.stddev), axis=-1)
  return log_scale if log_scale.ndim == 1 else jnp.mean(log_scale, axis=-1)


def box_penalty(distribution: Any, minimum: float, maximum: float) -> jax.Array:
  """Σ_d of the squared distance of the mean μ_d outside [minimum, maximum] per state, [S].

  0 for a mean inside the box, with zero gradient there; a mixture sums over its components.
  Its means must live in action space: a Gaussian's or a mixture's, not a tanh-Gaussian's.
  """
  mean = distribution.mean
  outside = jnp.maximum(mean - maximum, 0.0) + jnp.maximum(minimum - mean, 0.0)
  per_state = jnp.sum(jnp.square(outside), axis=-1)
  return per_state if per_state.ndim == 1 else jnp.sum(per_state, axis=-1)
