"""The pure-functional WPO learner (wpo_jax/learning.py) on a one-state continuous bandit."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from wpo_jax import learning
from wpo_jax import networks

OBSERVATION_DIM = 3
ACTION_DIM = 2
OPTIMUM = jnp.array([0.5, -0.3])
SMALL_LAYERS = (64, 64)


def _bandit_batch(key, batch_size):
  """One state, uniform behaviour actions, reward −½‖a−a*‖², terminal after one step."""
  actions = jax.random.uniform(key, (batch_size, ACTION_DIM), minval=-1.0, maxval=1.0)
  observation = jnp.ones((batch_size, OBSERVATION_DIM))
  return learning.Transition(
      observation=observation,
      action=actions,
      reward=-0.5 * jnp.sum(jnp.square(actions - OPTIMUM), axis=-1),
      discount=jnp.zeros((batch_size,)),
      next_observation=observation)


def _bandit_batches(key, num_steps, batch_size):
  """[num_steps, B, ...] batches for `fuse_sgd_steps`."""
  return jax.vmap(lambda k: _bandit_batch(k, batch_size))(jax.random.split(key, num_steps))


def _make(**config_overrides):
  config = learning.LearnerConfig(**{'num_action_samples': 8, **config_overrides})
  nets = networks.make_networks(ACTION_DIM, SMALL_LAYERS, SMALL_LAYERS)
  learner = learning.make_learner(nets, ACTION_DIM, config)
  return nets, learner, learner.init(jax.random.PRNGKey(0), OBSERVATION_DIM)


def test_bandit_policy_mean_converges_and_critic_fits():
  # Without critic-input clipping, so that ∇aQ is the true gradient for samples outside the box
  # (with clipping, zero gradients there bias the mean outward while σ is large), and with a mild
  # σ penalty so that σ can move within the test's budget. The data are fixed, so the mean
  # penalty is the reference's full softplus(0): it keeps the policy where the critic has data
  # while the critic is still being fitted (with the weaker default, the early, unfitted critic
  # sends the mean out of the data's box, where the critic only extrapolates).
  nets, learner, state = _make(learning_rate=1e-3, target_update_period=50,
                               clip_critic_actions=False, kl_weight_stddev=1.0,
                               kl_weight_mean=0.6931471805599453)
  fused = jax.jit(learning.fuse_sgd_steps(learner.sgd_step))
  key = jax.random.PRNGKey(1)
  for _ in range(6):
    key, batch_key = jax.random.split(key)
    state, metrics = fused(state, _bandit_batches(batch_key, 250, 64))
    assert bool(jnp.all(metrics['finite']))

  observation = jnp.ones((1, OBSERVATION_DIM))
  policy = nets.policy.apply(state.params.policy, observation)
  np.testing.assert_allclose(policy.mean[0], OPTIMUM, atol=0.05)
  # WPO has no entropy term: under a concave Q, σ shrinks from its initial 0.5.
  assert float(jnp.max(policy.stddev)) < 0.3

  probe = jax.random.uniform(jax.random.PRNGKey(2), (256, ACTION_DIM), minval=-1.0, maxval=1.0)
  q = nets.critic.apply(state.params.critic, jnp.ones((256, OBSERVATION_DIM)), probe)
  true_q = -0.5 * jnp.sum(jnp.square(probe - OPTIMUM), axis=-1)
  assert float(jnp.sqrt(jnp.mean(jnp.square(q - true_q)))) < 0.02


def test_targets_are_copied_on_schedule():
  _, learner, state = _make(target_update_period=3)
  step = jax.jit(learner.sgd_step)
  batch = _bandit_batch(jax.random.PRNGKey(3), 16)
  copied = state.params
  for i in range(1, 8):
    state, _ = step(state, batch)
    if i % 3 == 0:
      copied = state.params
      chex.assert_trees_all_equal(state.target_params, state.params)
    else:
      chex.assert_trees_all_equal(state.target_params, copied)
      with pytest.raises(AssertionError):
        chex.assert_trees_all_equal(state.target_params, state.params)
  assert int(state.steps) == 7


class StepTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_jit_and_no_jit_agree(self):
    _, learner, state = _make()
    batch = _bandit_batch(jax.random.PRNGKey(4), 16)
    step = self.variant(learner.sgd_step)
    reference = jax.jit(learner.sgd_step)
    s_variant, s_reference = state, state
    for _ in range(3):
      s_variant, m_variant = step(s_variant, batch)
      s_reference, m_reference = reference(s_reference, batch)
    chex.assert_trees_all_close(s_variant.params, s_reference.params, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m_variant['loss'], m_reference['loss'], rtol=1e-4, atol=1e-5)

  def test_fused_steps_equal_sequential_steps(self):
    _, learner, state = _make()
    batches = _bandit_batches(jax.random.PRNGKey(5), 4, 16)
    fused_state, fused_metrics = jax.jit(learning.fuse_sgd_steps(learner.sgd_step))(
        state, batches)
    step = jax.jit(learner.sgd_step)
    for i in range(4):
      state, metrics = step(state, jax.tree_util.tree_map(lambda x, i=i: x[i], batches))
    chex.assert_trees_all_close(fused_state.params, state.params, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fused_metrics['loss'][-1], metrics['loss'], rtol=1e-4, atol=1e-5)
    chex.assert_shape(fused_metrics['loss'], (4,))

  def test_every_step_draws_fresh_action_noise(self):
    _, learner, state = _make(learning_rate=1e-12)
    step = jax.jit(learner.sgd_step)
    batch = _bandit_batch(jax.random.PRNGKey(6), 16)
    first_state, first = step(state, batch)
    _, repeated = step(state, batch)
    _, second = step(first_state, batch)
    # Deterministic given the state, but the key advances, so the sampled actions change.
    assert float(first['wpo_loss']) == float(repeated['wpo_loss'])
    assert float(first['wpo_loss']) != float(second['wpo_loss'])
    assert not np.array_equal(jax.random.key_data(first_state.key),
                              jax.random.key_data(state.key))

  def test_gradient_clipping_is_applied(self):
    batch = _bandit_batch(jax.random.PRNGKey(7), 16)

    def policy_change(max_grad_norm):
      _, learner, state = _make(max_grad_norm=max_grad_norm)
      new_state, metrics = jax.jit(learner.sgd_step)(state, batch)
      delta = jax.tree_util.tree_map(lambda a, b: a - b, new_state.params.policy,
                                     state.params.policy)
      return float(learning.global_norm(delta)), metrics

    unclipped, metrics = policy_change(None)
    # Clipped to 1e-12 the gradient is far below Adam's ε, so the update all but vanishes.
    clipped, _ = policy_change(1e-12)
    assert float(metrics['policy_grad_norm']) > 1e-6
    assert clipped < 1e-3 * unclipped

  def test_non_finite_loss_is_reported(self):
    _, learner, state = _make()
    batch = _bandit_batch(jax.random.PRNGKey(8), 16)
    _, metrics = jax.jit(learner.sgd_step)(state, batch)
    assert bool(metrics['finite'])
    poisoned = batch._replace(reward=batch.reward.at[0].set(jnp.nan))
    _, metrics = jax.jit(learner.sgd_step)(state, poisoned)
    assert not bool(metrics['finite'])

  def test_lagrange_mode_moves_the_duals(self):
    _, learner, state = _make(kl_mode='lagrange', kl_epsilon_mean=1e-8, learning_rate=1e-2)
    step = jax.jit(learner.sgd_step)
    batch = _bandit_batch(jax.random.PRNGKey(9), 16)
    for _ in range(5):
      state, metrics = step(state, batch)
    # The policy leaves the target, the ε=1e-8 mean bound is violated, and its duals grow.
    assert float(metrics['kl_mean']) > 1e-8
    assert bool(jnp.all(state.dual_params.log_mean > 0.0))


@pytest.mark.parametrize('field, value', [
    ('num_action_samples', 0), ('discount', 1.5), ('target_update_period', 0),
    ('learning_rate', -1.0), ('kl_mode', 'adaptive'), ('max_grad_norm', 0.0),
])
def test_config_rejects_bad_values_naming_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    learning.LearnerConfig(**{field: value})
