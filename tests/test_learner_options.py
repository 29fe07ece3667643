"""Optional policy-step variants of LearnerConfig: policy loss at s', ∇aQ transforms, entropy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wpo_jax import distributions
from wpo_jax import learning
from wpo_jax import networks
from wpo_jax import policy_options

import transitions  # tests/transitions.py

OBSERVATION_DIM, ACTION_DIM, BATCH = 3, 2, 6
LAYERS = (16, 16)


def _batch(key, discount):
  return transitions.random_transitions(key, discount, OBSERVATION_DIM, ACTION_DIM)


def _step(batch, **overrides):
  config = learning.LearnerConfig(**{'num_action_samples': 4, 'max_grad_norm': None,
                                     **overrides})
  nets = networks.make_networks(ACTION_DIM, LAYERS, LAYERS)
  learner = learning.make_learner(nets, ACTION_DIM, config)
  state = learner.init(jax.random.PRNGKey(0), OBSERVATION_DIM)
  return jax.jit(learner.sgd_step)(state, batch)


def _assert_trees_equal(a, b):
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def test_policy_states_weights_count_only_states_that_are_acted_in():
  batch = _batch(jax.random.PRNGKey(0), [1.0, 0.0, 0.5, 1.0, 0.0, 1.0])
  observation, weight = policy_options.policy_states(batch, 's')
  np.testing.assert_array_equal(observation, batch.observation)
  np.testing.assert_array_equal(weight, np.ones(BATCH))
  observation, weight = policy_options.policy_states(batch, 's_and_next')
  np.testing.assert_array_equal(observation, np.concatenate(
      [batch.observation, batch.next_observation]))
  # 12 states of which 10 count (two s' have D = 0): weights 12/10 or 0, mean 1.
  np.testing.assert_allclose(weight, 1.2 * np.array([1] * 6 + [1, 0, 1, 1, 0, 1]), rtol=1e-6)


def test_policy_at_s_and_next_equals_policy_at_s_on_the_doubled_batch():
  # With s' = s and D = 1 everywhere, 's_and_next' takes the policy loss at [s; s]: exactly what
  # 's' takes on the batch stacked twice (same sample shapes, so the same actions). The policy
  # gradient does not depend on the critic's targets, so its norm and the updated policy agree.
  batch = _batch(jax.random.PRNGKey(1), np.ones(BATCH))
  batch = batch._replace(next_observation=batch.observation)
  doubled = jax.tree_util.tree_map(lambda x: jnp.concatenate([x, x]), batch)
  state_a, metrics_a = _step(batch, policy_loss_states='s_and_next')
  state_b, metrics_b = _step(doubled, policy_loss_states='s')
  for name in ('wpo_loss', 'kl_penalty', 'policy_grad_norm'):
    np.testing.assert_allclose(metrics_a[name], metrics_b[name], rtol=1e-5, err_msg=name)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                         state_a.params.policy, state_b.params.policy)
  # And the option changes the step: at s only, the policy gradient differs.
  _, metrics_s = _step(batch, policy_loss_states='s')
  assert abs(float(metrics_s['policy_grad_norm']) - float(metrics_a['policy_grad_norm'])) > 1e-6


def test_bootstrap_states_after_a_terminal_do_not_move_the_policy():
  batch = _batch(jax.random.PRNGKey(2), np.zeros(BATCH))
  other = batch._replace(next_observation=100.0 * batch.next_observation + 3.0)
  state_a, metrics_a = _step(batch, policy_loss_states='s_and_next')
  state_b, metrics_b = _step(other, policy_loss_states='s_and_next')
  np.testing.assert_array_equal(metrics_a['policy_grad_norm'], metrics_b['policy_grad_norm'])
  _assert_trees_equal(state_a.params, state_b.params)


def test_dq_da_transforms_closed_forms():
  dq_da = jnp.array([[[8.0, -27.0], [0.001, 0.0]], [[-1.0, 2.0], [4.0, 0.5]]])  # [N=2, S=2, D]
  ones = jnp.ones(2)
  np.testing.assert_array_equal(policy_options.transform_dq_da(dq_da, ones, 'none'), dq_da)
  np.testing.assert_allclose(policy_options.transform_dq_da(dq_da, ones, 'cube_root'),
                             np.sign(dq_da) * np.abs(dq_da) ** (1 / 3), rtol=1e-6)
  normalised = policy_options.transform_dq_da(dq_da, ones, 'batch_normalise')
  rms = np.sqrt(np.mean(np.square(dq_da)))
  np.testing.assert_allclose(normalised, dq_da / rms, rtol=1e-6)
  # A state with weight 0 does not enter the scale; weights 2 and 0 (mean 1) use state 0 only.
  weighted = policy_options.transform_dq_da(dq_da, jnp.array([2.0, 0.0]), 'batch_normalise')
  rms_state0 = np.sqrt(np.mean(np.square(dq_da[:, 0])))
  np.testing.assert_allclose(weighted, dq_da / rms_state0, rtol=1e-6)
  # Scaling the critic by any c > 0 leaves the normalised gradient unchanged.
  np.testing.assert_allclose(policy_options.transform_dq_da(1e-3 * dq_da, ones, 'batch_normalise'),
                             normalised, rtol=1e-5)
  # A flat critic stays flat: the floor keeps rounding noise from becoming unit-scale.
  tiny = jnp.full((2, 2, 2), 1e-9)
  np.testing.assert_allclose(policy_options.transform_dq_da(tiny, ones, 'batch_normalise'),
                             tiny / policy_options.MIN_DQ_DA_RMS, rtol=1e-6)


def _scale_critic_output(state, factor):
  """The state with Q multiplied by `factor` (the critic's output layer scaled)."""
  critic = jax.tree_util.tree_map(lambda x: x, state.params.critic)
  output = critic['params']['Dense_0']
  critic['params']['Dense_0'] = {k: factor * v for k, v in output.items()}
  return state._replace(params=state.params._replace(critic=critic))


def test_batch_normalise_makes_the_policy_step_independent_of_the_critic_scale():
  batch = _batch(jax.random.PRNGKey(3), np.ones(BATCH))
  results = {}
  for transform in ('none', 'batch_normalise'):
    config = learning.LearnerConfig(num_action_samples=4, max_grad_norm=None,
                                    dq_da_transform=transform)
    nets = networks.make_networks(ACTION_DIM, LAYERS, LAYERS)
    learner = learning.make_learner(nets, ACTION_DIM, config)
    state = learner.init(jax.random.PRNGKey(0), OBSERVATION_DIM)
    step = jax.jit(learner.sgd_step)
    results[transform] = [step(_scale_critic_output(state, c), batch)[1]['wpo_loss']
                          for c in (1.0, 1000.0)]
  # The surrogate is linear in ∇aQ: ×1000 without the transform, unchanged with it.
  np.testing.assert_allclose(results['none'][1], 1000.0 * results['none'][0], rtol=1e-4)
  np.testing.assert_allclose(results['batch_normalise'][1], results['batch_normalise'][0],
                             rtol=1e-4)
  assert abs(float(results['none'][0] - results['batch_normalise'][0])) > 1e-6


def test_log_scale_entropy_is_the_gaussian_entropy_less_its_constant():
  stddev = jnp.array([[0.5, 2.0], [1.0, 0.1]])
  mean = jnp.zeros_like(stddev)
  constant = ACTION_DIM * 0.5 * np.log(2 * np.pi * np.e)
  entropy = np.sum(np.log(stddev), axis=-1) + constant
  gaussian = distributions.DiagonalGaussian(mean, stddev)
  np.testing.assert_allclose(policy_options.log_scale_entropy(gaussian) + constant, entropy, rtol=1e-6)
  np.testing.assert_allclose(
      policy_options.log_scale_entropy(distributions.TanhGaussian(mean, stddev)) + constant, entropy,
      rtol=1e-6)
  # Monte-Carlo check of the Gaussian entropy itself: −E[log π(a)].
  samples = gaussian.sample(jax.random.PRNGKey(0), 200_000)
  np.testing.assert_allclose(-jnp.mean(gaussian.log_prob(samples), axis=0), entropy, atol=0.01)
  mixture = distributions.MixtureGaussian(jnp.zeros((2, 3)), jnp.zeros((2, 3, 2)),
                                          jnp.broadcast_to(stddev[:, None], (2, 3, 2)))
  np.testing.assert_allclose(policy_options.log_scale_entropy(mixture), np.sum(np.log(stddev), -1),
                             rtol=1e-6)


def test_entropy_weight_adds_minus_w_log_sigma():
  # The entropy loss is −w·mean_s Σ_d log σ_d(s) at the step's (initial) parameters, and with it
  # σ grows where it otherwise would not.
  batch = _batch(jax.random.PRNGKey(4), np.ones(BATCH))
  w = 2.0
  state_w, metrics_w = _step(batch, entropy_weight=w, kl_weight_stddev=0.0)
  state_0, metrics_0 = _step(batch, kl_weight_stddev=0.0)
  assert 'entropy_loss' not in metrics_0
  nets = networks.make_networks(ACTION_DIM, LAYERS, LAYERS)
  sigma = lambda s: nets.policy.apply(s.params.policy, batch.observation).stddev
  initial = learning.make_learner(nets, ACTION_DIM).init(jax.random.PRNGKey(0), OBSERVATION_DIM)
  expected = -w * np.mean(np.sum(np.log(np.asarray(sigma(initial), np.float64)), axis=-1))
  np.testing.assert_allclose(metrics_w['entropy_loss'], expected, rtol=1e-5)
  assert float(jnp.mean(sigma(state_w))) > float(jnp.mean(sigma(state_0)))


def test_box_penalty_is_the_squared_distance_of_each_mean_outside_the_box():
  gaussian = distributions.DiagonalGaussian(mean=jnp.array([[1.5, 0.2, -2.0], [0.0, 1.0, -1.0]]),
                                            stddev=jnp.ones((2, 3)))
  np.testing.assert_allclose(policy_options.box_penalty(gaussian, -1.0, 1.0), [0.25 + 1.0, 0.0])
  # ∂/∂μ: 2(μ − 1) above the box, 2(μ + 1) below it, 0 inside (on the bound too).
  grad = jax.grad(lambda m: jnp.sum(policy_options.box_penalty(
      gaussian._replace(mean=m), -1.0, 1.0)))(gaussian.mean)
  np.testing.assert_allclose(grad, [[1.0, 0.0, -2.0], [0.0, 0.0, 0.0]])
  # A mixture sums over its components: [S=1, K=2, D=1].
  mixture = distributions.MixtureGaussian(logits=jnp.zeros((1, 2)),
                                          mean=jnp.array([[[3.0], [-1.5]]]),
                                          stddev=jnp.ones((1, 2, 1)))
  np.testing.assert_allclose(policy_options.box_penalty(mixture, -1.0, 1.0), [4.0 + 0.25])


def test_mean_box_penalty_pulls_means_back_into_the_box():
  # Means pushed far outside the box by a large output bias: the loss is w·mean_s Σ_d (μ−1)² at
  # the step's parameters, and the step moves the means towards the box, which the WPO term
  # (∇aQ of an untrained critic, clipping off) does not do on its own.
  batch = _batch(jax.random.PRNGKey(5), np.ones(BATCH))
  nets = networks.make_networks(ACTION_DIM, LAYERS, LAYERS)
  config = dict(clip_critic_actions=False, kl_weight_mean=0.0, learning_rate=1e-2)
  w = 3.0

  def run(**overrides):
    learner = learning.make_learner(nets, ACTION_DIM, learning.LearnerConfig(
        num_action_samples=4, max_grad_norm=None, **config, **overrides))
    state = learner.init(jax.random.PRNGKey(0), OBSERVATION_DIM)
    params = state.params.policy['params']
    shifted_mean = {**params['mean'], 'bias': params['mean']['bias'] + 4.0}
    shifted = {'params': {**params, 'mean': shifted_mean}}
    state = state._replace(params=state.params._replace(policy=shifted))
    mean = lambda s: nets.policy.apply(s.params.policy, batch.observation).mean
    before = mean(state)
    step = jax.jit(learner.sgd_step)
    metrics = None
    for _ in range(20):
      state, step_metrics = step(state, batch)
      metrics = metrics or step_metrics
    return before, mean(state), metrics

  before, after_w, metrics_w = run(mean_box_penalty=w)
  _, after_0, metrics_0 = run()
  assert 'box_loss' not in metrics_0
  expected = w * np.mean(np.sum(np.square(np.maximum(np.asarray(before) - 1.0, 0.0)), axis=-1))
  np.testing.assert_allclose(metrics_w['box_loss'], expected, rtol=1e-5)
  excess = lambda m: float(jnp.mean(jnp.maximum(m - 1.0, 0.0)))
  assert excess(after_w) < 0.5 * excess(before)
  assert excess(after_w) < excess(after_0)


@pytest.mark.parametrize('field, value, message', [
    ('mean_box_penalty', -1.0, 'mean_box_penalty must be >= 0'),
    ('policy_loss_states', 'next', "policy_loss_states must be one of ('s', 's_and_next')"),
    ('dq_da_transform', 'sqrt', 'dq_da_transform must be one of'),
    ('entropy_weight', -1.0, 'entropy_weight must be >= 0'),
])
def test_bad_option_values_are_refused(field, value, message):
  with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
    learning.LearnerConfig(**{field: value})


def test_changed_wpo_step_options_names_those_off_their_defaults_in_order():
  assert learning.LearnerConfig().changed_wpo_step_options() == ()
  config = learning.LearnerConfig(mean_box_penalty=1.0, entropy_weight=0.1,
                                  policy_loss_states='s_and_next')
  assert config.changed_wpo_step_options() == ('policy_loss_states', 'entropy_weight',
                                               'mean_box_penalty')


def test_options_are_refused_with_another_policy_improvement():
  nets = networks.make_networks(ACTION_DIM, LAYERS, LAYERS)
  improvement = learning.PolicyImprovement(init=lambda d: (), loss=None)
  with pytest.raises(ValueError, match='options of the WPO policy step'):
    learning.make_learner(nets, ACTION_DIM, learning.LearnerConfig(entropy_weight=1.0),
                          improvement)
