"""MPO (dm-acme's loss) as a policy-improvement step behind the WPO learner's critic."""

import agents  # noqa: F401  (dm-acme patches)
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import wpo
from agents.wpo import mpo
import test_learner_wiring
from wpo_jax import learning
from wpo_jax import networks

OPTIMUM = jnp.array([0.5, -0.3])


def _batches(key, num_steps, batch_size=64):
  actions = jax.random.uniform(key, (num_steps, batch_size, 2), minval=-1.0, maxval=1.0)
  observation = jnp.ones((num_steps, batch_size, 3))
  return learning.Transition(observation, actions,
                             -0.5 * jnp.sum(jnp.square(actions - OPTIMUM), axis=-1),
                             jnp.zeros((num_steps, batch_size)), observation)


def _learners(target_update_period=100):
  nets = networks.make_networks(2, (64, 64), (64, 64))
  config = learning.LearnerConfig(num_action_samples=8, learning_rate=1e-3,
                                  clip_critic_actions=False,
                                  target_update_period=target_update_period)
  return (nets, learning.make_learner(nets, 2, config),
          learning.make_learner(nets, 2, config, mpo.make_mpo_improvement(8)))


def test_mpo_and_wpo_share_the_critic_update():
  _, wpo_learner, mpo_learner = _learners()
  batch = jax.tree_util.tree_map(lambda x: x[0], _batches(jax.random.PRNGKey(0), 1))
  key = jax.random.PRNGKey(1)
  wpo_state, wpo_metrics = jax.jit(wpo_learner.sgd_step)(wpo_learner.init(key, 3), batch)
  mpo_state, mpo_metrics = jax.jit(mpo_learner.sgd_step)(mpo_learner.init(key, 3), batch)
  assert float(wpo_metrics['critic_loss']) == pytest.approx(float(mpo_metrics['critic_loss']))
  jax.tree_util.tree_map(np.testing.assert_allclose, wpo_state.params.critic,
                         mpo_state.params.critic)
  assert isinstance(mpo_state.dual_params, mpo.acme_mpo.MPOParams)
  assert 'mpo_temperature' in mpo_metrics and bool(mpo_metrics['finite'])


def test_mpo_critic_loss_is_the_bootstrapped_td_loss_by_hand():
  """Independent of WPO's step: with D > 0 and distinct targets, MPO's critic loss is
  ½ mean (R + γ·D·Q̄(s', μ̄(s')) − Q(s, a))² computed from the networks alone."""
  nets = test_learner_wiring.near_deterministic_networks()
  gamma = 0.95
  learner = learning.make_learner(nets, 2, learning.LearnerConfig(num_action_samples=4,
                                                                  discount=gamma),
                                  mpo.make_mpo_improvement(4))
  state = test_learner_wiring.with_distinct_targets(learner.init(jax.random.PRNGKey(0), 3))
  batch = test_learner_wiring.bootstrapping_batch()
  _, metrics = jax.jit(learner.sgd_step)(state, batch)
  expected = test_learner_wiring.hand_critic_loss(nets, state, batch, gamma)
  assert float(metrics['critic_loss']) == pytest.approx(expected, rel=1e-5)


def test_mpo_moves_the_bandit_policy_towards_the_optimum():
  # MPO's trust region (ε_mean = 0.0025 per target period) moves the mean at most ~0.035 per
  # target update: refresh the target often so that a short test can see it converge.
  nets, _, mpo_learner = _learners(target_update_period=5)
  state = mpo_learner.init(jax.random.PRNGKey(0), 3)
  fused = jax.jit(learning.fuse_sgd_steps(mpo_learner.sgd_step))
  initial = nets.policy.apply(state.params.policy, jnp.ones((1, 3))).mean[0]
  for i in range(3):
    state, metrics = fused(state, _batches(jax.random.PRNGKey(10 + i), 250))
    assert bool(jnp.all(metrics['finite']))
  final = nets.policy.apply(state.params.policy, jnp.ones((1, 3))).mean[0]
  assert float(jnp.linalg.norm(final - OPTIMUM)) < 0.5 * float(jnp.linalg.norm(initial - OPTIMUM))


def test_config_selects_mpo_only_for_gaussian_policies():
  assert wpo.make_config('default', policy_improvement='mpo').policy_improvement == 'mpo'
  with pytest.raises(ValueError, match='policy_improvement'):
    wpo.make_config('default', policy_improvement='ppo')
  with pytest.raises(ValueError, match='policy_improvement'):
    wpo.make_config('default', policy_improvement='mpo', policy='mixture')
