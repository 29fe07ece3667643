"""Random batches of n-step transitions for the learner tests."""

import jax
import jax.numpy as jnp

from wpo_jax import learning


def random_transitions(key: jax.Array, discount, observation_dim: int, action_dim: int,
                       action_bound: float = 1.0) -> learning.Transition:
  """B = len(discount) transitions: normal observations and rewards, actions uniform in
  ±action_bound, the given discounts D [B]."""
  discount = jnp.asarray(discount, jnp.float32)
  batch = discount.shape[0]
  keys = jax.random.split(key, 4)
  return learning.Transition(
      observation=jax.random.normal(keys[0], (batch, observation_dim)),
      action=jax.random.uniform(keys[1], (batch, action_dim), minval=-action_bound,
                                maxval=action_bound),
      reward=jax.random.normal(keys[2], (batch,)),
      discount=discount,
      next_observation=jax.random.normal(keys[3], (batch, observation_dim)))
