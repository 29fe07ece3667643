"""The learner's optax wiring: per-network global-norm clipping and periodic target copies equal
hand-written references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wpo_jax import learning
from wpo_jax import networks

OBSERVATION_DIM = 3
ACTION_DIM = 2
ADAM_B1 = 0.9  # optax.adam's default: after one step from zero, Adam's mu is (1 − b1)·gradient.


def _batch(key, batch_size=16):
  observation = jax.random.normal(key, (batch_size, OBSERVATION_DIM))
  actions = jax.random.uniform(jax.random.fold_in(key, 1), (batch_size, ACTION_DIM),
                               minval=-1.0, maxval=1.0)
  return learning.Transition(observation=observation, action=actions,
                             reward=jnp.sum(actions, axis=-1), discount=jnp.ones((batch_size,)),
                             next_observation=observation + 1.0)


def _one_step(**config):
  """(state after one step, metrics, the gradients the optimisers received per part)."""
  config = learning.LearnerConfig(num_action_samples=4, kl_mode='lagrange', **config)
  learner = learning.make_learner(networks.make_networks(ACTION_DIM, (16,), (16,)), ACTION_DIM,
                                  config)
  state = learner.init(jax.random.PRNGKey(0), OBSERVATION_DIM)
  new_state, metrics = jax.jit(learner.sgd_step)(state, _batch(jax.random.PRNGKey(1)))
  received = jax.tree_util.tree_map(lambda mu: mu / (1.0 - ADAM_B1),
                                    (new_state.opt_state[0][0].mu, new_state.opt_state[1][0].mu))
  return new_state, metrics, received


def _reference_clip(tree, max_norm):
  """g · min(1, c / ‖g‖) with ‖g‖ the root of the sum of squares of every leaf."""
  norm = np.sqrt(sum(np.sum(np.square(np.asarray(x))) for x in jax.tree_util.tree_leaves(tree)))
  return jax.tree_util.tree_map(lambda g: np.asarray(g) * min(1.0, max_norm / norm), tree), norm


def test_each_network_and_the_duals_are_clipped_to_max_grad_norm_separately():
  _, _, (raw, raw_duals) = _one_step(max_grad_norm=None)
  policy_norm = _reference_clip(raw.policy, 1.0)[1]
  critic_norm = _reference_clip(raw.critic, 1.0)[1]
  dual_norm = _reference_clip(raw_duals, 1.0)[1]
  assert min(policy_norm, critic_norm, dual_norm) > 0.0
  # A threshold between the two networks' norms: one is clipped, the other not, which a single
  # clip over both networks would not do.
  max_norm = float(np.sqrt(policy_norm * critic_norm))
  assert min(policy_norm, critic_norm) < max_norm < max(policy_norm, critic_norm)
  _, metrics, (clipped, clipped_duals) = _one_step(max_grad_norm=max_norm)
  for got, want in ((clipped.policy, raw.policy), (clipped.critic, raw.critic),
                    (clipped_duals, raw_duals)):
    expected, _ = _reference_clip(want, max_norm)
    jax.tree_util.tree_map(lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-9),
                           got, expected)
  # The metrics are the norms before clipping.
  np.testing.assert_allclose(metrics['policy_grad_norm'], policy_norm, rtol=1e-5)
  np.testing.assert_allclose(metrics['critic_grad_norm'], critic_norm, rtol=1e-5)


@pytest.mark.parametrize('period', [1, 3])
def test_targets_are_copied_every_period_steps_and_held_in_between(period):
  config = learning.LearnerConfig(num_action_samples=4, target_update_period=period)
  learner = learning.make_learner(networks.make_networks(ACTION_DIM, (16,), (16,)), ACTION_DIM,
                                  config)
  state = learner.init(jax.random.PRNGKey(0), OBSERVATION_DIM)
  step = jax.jit(learner.sgd_step)
  for i in range(1, 7):
    previous_target = state.target_params
    state, _ = step(state, _batch(jax.random.PRNGKey(i)))
    expected = state.params if i % period == 0 else previous_target
    jax.tree_util.tree_map(np.testing.assert_array_equal, state.target_params, expected)
