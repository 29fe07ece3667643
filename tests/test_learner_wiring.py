"""How wpo_jax/learning.py wires the pieces together, each against a computation by hand.

The core math (tests/test_losses.py, test_distributions.py) is checked elsewhere; here: which
networks, parameters and discounts one learner step feeds to it. Gradients are read from Adam's
first moment after one step (μ₁ = (1 − β₁)·g), so each check sees the exact gradient the step
used, after clipping.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from wpo_jax import distributions
from wpo_jax import learning
from wpo_jax import networks

import transitions  # tests/transitions.py

OBSERVATION_DIM = 3
ACTION_DIM = 2
BATCH = 6
ADAM_B1 = 0.9  # optax.adam's default, used by the learner.


def _batch(key, discount):
  return transitions.random_transitions(key, discount, OBSERVATION_DIM, ACTION_DIM,
                                        action_bound=0.9)


def _perturbed(params, key, scale):
  leaves, treedef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree_util.tree_unflatten(
      treedef, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def adam_gradients(opt_state, like):
  """The gradient of the first step, g = μ₁ / (1 − β₁), from the Adam state whose first moment
  has the structure of `like` (WPOParams or KLDuals), wherever the optimiser chain keeps it."""
  found = [node.mu for node in jax.tree_util.tree_leaves(
      opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
           if isinstance(node, optax.ScaleByAdamState) and
           jax.tree_util.tree_structure(node.mu) == jax.tree_util.tree_structure(like)]
  assert len(found) == 1, f'expected one Adam state shaped like {type(like).__name__}'
  return jax.tree_util.tree_map(lambda m: m / (1.0 - ADAM_B1), found[0])


# The critic target: R + γ·D·mean_i Q̄(s', a'_i), a'_i ~ π̄(s').


def near_deterministic_networks():
  """σ ≈ 2e-7: a policy's samples all sit at its mean (to ~1e-6), so a bootstrap over them is
  Q̄(s', μ̄(s')) whatever noise the step draws."""
  return networks.make_networks(ACTION_DIM, (16, 16), (16, 16), init_scale=1e-7, min_scale=1e-7)


def with_distinct_targets(state):
  """Target networks that differ from the online ones (as between two copies): the target
  policy's mean then depends on the state, the target critic is another function."""
  return state._replace(target_params=learning.WPOParams(
      policy=_perturbed(state.params.policy, jax.random.PRNGKey(1), 0.3),
      critic=_perturbed(state.params.critic, jax.random.PRNGKey(2), 0.3)))


def bootstrapping_batch():
  """A batch with D spread over [0.3, 1] and s' ≠ s."""
  return _batch(jax.random.PRNGKey(3), jnp.linspace(0.3, 1.0, BATCH))


def hand_critic_loss(nets, state, batch, gamma):
  """½ mean_b (R + γ·D·Q̄(s', μ̄(s')) − Q(s, a))², from the networks alone (actions clipped to
  the box at the critic input, as the learner does)."""
  target = state.target_params
  next_action = jnp.clip(nets.policy.apply(target.policy, batch.next_observation).mean, -1, 1)
  assert float(jnp.std(next_action)) > 0.05  # State-dependent: s' and s give different a'.
  q_next = nets.critic.apply(target.critic, batch.next_observation, next_action)
  q = nets.critic.apply(state.params.critic, batch.observation, jnp.clip(batch.action, -1, 1))
  return float(0.5 * np.mean(np.square(batch.reward + gamma * batch.discount * q_next - q)))


def test_critic_loss_bootstraps_with_gamma_times_d_from_the_target_networks():
  nets = near_deterministic_networks()
  gamma = 0.9
  learner = learning.make_learner(nets, ACTION_DIM,
                                  learning.LearnerConfig(num_action_samples=5, discount=gamma))
  state = with_distinct_targets(learner.init(jax.random.PRNGKey(0), OBSERVATION_DIM))
  batch = bootstrapping_batch()
  _, metrics = jax.jit(learner.sgd_step)(state, batch)
  expected = hand_critic_loss(nets, state, batch, gamma)
  # Each wiring bug (γ for γ·D, D for γ·D, the online critic or policy, s for s') moves the loss
  # far more than the tolerance; tools/mutants.py checks that.
  assert float(metrics['critic_loss']) == pytest.approx(expected, rel=1e-5)


# The policy step: WPO through the preconditioned parameters, the KL through the raw ones.


class _ConstantGaussian(nn.Module):
  """A state-independent Gaussian whose parameters are its mean and stddev, [D] each."""
  action_dim: int

  @nn.compact
  def __call__(self, observation):
    mean = self.param('mean', nn.initializers.zeros_init(), (self.action_dim,))
    stddev = self.param('stddev', nn.initializers.constant(0.5), (self.action_dim,))
    shape = observation.shape[:-1] + (self.action_dim,)
    return distributions.DiagonalGaussian(jnp.broadcast_to(mean, shape),
                                          jnp.broadcast_to(stddev, shape))


class _LinearCritic(nn.Module):
  """Q(s, a) = w·s + c·a: ∇aQ = c for every action, so the WPO mean gradient is exact."""

  @nn.compact
  def __call__(self, observation, action):
    w = self.param('w', nn.initializers.constant(0.1), (observation.shape[-1],))
    c = self.param('c', nn.initializers.constant(1.0), (action.shape[-1],))
    return observation @ w + action @ c


MEAN, STDDEV = jnp.array([0.1, -0.2]), jnp.array([0.5, 0.3])
TARGET_MEAN, TARGET_STDDEV = jnp.array([0.3, -0.1]), jnp.array([0.4, 0.35])
DQ_DA = jnp.array([0.7, -1.3])
KL_WEIGHT_MEAN, KL_WEIGHT_STDDEV = 0.2, 0.05


def _policy_step(natural_gradient, **overrides):
  """One step of the constant Gaussian against the linear critic: (gradients, state before)."""
  nets = networks.WPONetworks(policy=_ConstantGaussian(ACTION_DIM), critic=_LinearCritic())
  config = learning.LearnerConfig(**{
      'num_action_samples': 64, 'natural_gradient': natural_gradient, 'max_grad_norm': None,
      'clip_critic_actions': False, 'kl_weight_mean': KL_WEIGHT_MEAN,
      'kl_weight_stddev': KL_WEIGHT_STDDEV, **overrides})
  learner = learning.make_learner(nets, ACTION_DIM, config)
  state = learner.init(jax.random.PRNGKey(0), OBSERVATION_DIM)
  policy = {'params': {'mean': MEAN, 'stddev': STDDEV}}
  target_policy = {'params': {'mean': TARGET_MEAN, 'stddev': TARGET_STDDEV}}
  critic = {'params': {'w': jnp.full((OBSERVATION_DIM,), 0.1), 'c': DQ_DA}}
  state = state._replace(params=learning.WPOParams(policy, critic),
                         target_params=learning.WPOParams(target_policy, critic))
  new_state, _ = jax.jit(learner.sgd_step)(state, _batch(jax.random.PRNGKey(4), jnp.ones(BATCH)))
  return new_state, state


def _policy_gradients(natural_gradient):
  new_state, state = _policy_step(natural_gradient)
  return adam_gradients(new_state.opt_state, state.params).policy['params']


def test_policy_step_preconditions_the_wpo_term_and_not_the_kl():
  natural, plain = _policy_gradients(True), _policy_gradients(False)
  # The fixed KL's gradient, by hand: α_μ (μ − μ̄)/σ̄² and α_σ (1/σ − σ̄²/σ³).
  kl_mean = KL_WEIGHT_MEAN * (MEAN - TARGET_MEAN) / TARGET_STDDEV**2
  kl_stddev = KL_WEIGHT_STDDEV * (1.0 / STDDEV - TARGET_STDDEV**2 / STDDEV**3)
  # WPO mean gradient with ∇aQ = c: −c/σ² plain (∇μ∇a log π = 1/σ²), −c preconditioned (× σ²).
  np.testing.assert_allclose(plain['mean'], -DQ_DA / STDDEV**2 + kl_mean, rtol=1e-4)
  np.testing.assert_allclose(natural['mean'], -DQ_DA + kl_mean, rtol=1e-4)
  # The σ part depends on the sampled actions, which both steps share (same key, same values):
  # the preconditioned WPO part is σ²/2 times the plain one, the KL part is the same.
  plain_wpo_stddev = plain['stddev'] - kl_stddev
  assert float(jnp.min(jnp.abs(plain_wpo_stddev))) > 1e-2  # A WPO σ term to scale.
  np.testing.assert_allclose(natural['stddev'], STDDEV**2 / 2 * plain_wpo_stddev + kl_stddev,
                             rtol=1e-4, atol=1e-6)


def test_lagrange_step_weights_the_kl_by_the_duals_and_moves_them_by_the_batch_mean_kl():
  eps_mean, eps_stddev = 0.01, 1e-3
  new_state, state = _policy_step(True, kl_mode='lagrange', kl_epsilon_mean=eps_mean,
                                  kl_epsilon_stddev=eps_stddev, init_log_dual=0.5)
  alpha = np.log1p(np.exp(0.5)) + 1e-8
  slope = 1.0 / (1.0 + np.exp(-0.5))  # softplus'(0.5)
  # Per state (all B states alike) and per dimension, by hand.
  kl_mean = (MEAN - TARGET_MEAN)**2 / (2 * TARGET_STDDEV**2)
  ratio = (TARGET_STDDEV / STDDEV)**2
  kl_stddev = 0.5 * (ratio - 1 - np.log(ratio))
  assert float(jnp.min(kl_mean)) > eps_mean  # Violated in both dimensions; the σ part is not.
  duals = adam_gradients(new_state.opt_state, state.dual_params)
  np.testing.assert_allclose(duals.log_mean, slope * (eps_mean - kl_mean), rtol=1e-4)
  np.testing.assert_allclose(duals.log_stddev, slope * (eps_stddev - kl_stddev), rtol=1e-4)
  policy = adam_gradients(new_state.opt_state, state.params).policy['params']
  np.testing.assert_allclose(policy['mean'],
                             -DQ_DA + alpha * (MEAN - TARGET_MEAN) / TARGET_STDDEV**2, rtol=1e-4)


# Separate clipping of the policy, critic and dual gradients.


def _clipping_step(max_grad_norm):
  nets = networks.make_networks(ACTION_DIM, (16, 16), (16, 16))
  config = learning.LearnerConfig(num_action_samples=4, max_grad_norm=max_grad_norm,
                                  kl_mode='lagrange', kl_epsilon_mean=1e-9,
                                  kl_epsilon_stddev=1e-9)
  learner = learning.make_learner(nets, ACTION_DIM, config)
  state = learner.init(jax.random.PRNGKey(0), OBSERVATION_DIM)
  state = state._replace(target_params=_perturbed(state.params, jax.random.PRNGKey(5), 0.1))
  new_state, metrics = jax.jit(learner.sgd_step)(
      state, _batch(jax.random.PRNGKey(6), jnp.full((BATCH,), 0.9)))
  return (adam_gradients(new_state.opt_state, state.params),
          adam_gradients(new_state.opt_state, state.dual_params), metrics)


def test_policy_critic_and_dual_gradients_are_clipped_separately_to_max_grad_norm():
  raw, raw_duals, raw_metrics = _clipping_step(None)
  raw_norms = {'policy': learning.global_norm(raw.policy),
               'critic': learning.global_norm(raw.critic), 'duals': learning.global_norm(raw_duals)}
  np.testing.assert_allclose(raw_metrics['policy_grad_norm'], raw_norms['policy'], rtol=1e-4)
  np.testing.assert_allclose(raw_metrics['critic_grad_norm'], raw_norms['critic'], rtol=1e-4)
  smallest, largest = min(raw_norms.values()), max(raw_norms.values())
  assert float(largest) > 2.0 * float(smallest) > 0.0
  # Below every norm: each group is clipped to exactly M. Between the smallest and the largest:
  # one group is clipped and another is not (a joint clip would scale all by one factor).
  for bound in (0.5 * float(smallest), float(np.sqrt(smallest * largest))):
    clipped, clipped_duals, _ = _clipping_step(bound)
    for name, grads, raw_grads in (('policy', clipped.policy, raw.policy),
                                   ('critic', clipped.critic, raw.critic),
                                   ('duals', clipped_duals, raw_duals)):
      # Each group by itself: g·min(1, M/‖g‖).
      scale = min(1.0, bound / float(raw_norms[name]))
      jax.tree_util.tree_map(
          lambda c, r, scale=scale, name=name: np.testing.assert_allclose(
              c, r * scale, rtol=1e-4, atol=1e-9, err_msg=name), grads, raw_grads)
      expected = min(bound, float(raw_norms[name]))
      assert float(learning.global_norm(grads)) == pytest.approx(expected, rel=1e-4), name
