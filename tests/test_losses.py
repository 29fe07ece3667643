"""Closed-form and independent checks of the WPO losses (wpo_jax/losses.py)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from wpo_jax import distributions
from wpo_jax import losses


def _gaussian_wpo_grads(mean, stddev, actions, dq_da, precondition):
  """Gradient of the surrogate w.r.t. (μ, σ) given as raw parameters."""

  def surrogate(mu, sigma):
    policy = distributions.DiagonalGaussian(mu, sigma)
    if precondition:
      policy = policy.preconditioned()
    return losses.wpo_surrogate(policy.log_prob, actions, dq_da)

  return jax.grad(surrogate, argnums=(0, 1))(mean, stddev)


class GaussianFlowTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_quadratic_q_gives_the_closed_form_flow(self):
    """Q = −½‖a−a*‖²: the preconditioned expected update is Δμ = a*−μ, Δσ = −σ."""
    mean = jnp.array([0.3, -1.0, 2.0])
    stddev = jnp.array([0.5, 1.5, 0.2])
    optimum = jnp.array([1.0, 0.5, 2.5])
    num_samples = 200_000
    actions = distributions.DiagonalGaussian(mean, stddev).sample(
        jax.random.PRNGKey(0), num_samples)
    dq_da = optimum - actions

    grads = self.variant(_gaussian_wpo_grads, static_argnums=(4,))(
        mean, stddev, actions, dq_da, True)
    delta_mean, delta_stddev = -grads[0], -grads[1]

    # Per-sample updates: a*−a (std σ) and ε(a*−μ) − σε² (std √((a*−μ)² + 2σ²)).
    tol_mean = 5.0 * stddev / np.sqrt(num_samples)
    tol_stddev = 5.0 * np.sqrt((optimum - mean)**2 + 2 * stddev**2) / np.sqrt(num_samples)
    np.testing.assert_array_less(np.abs(delta_mean - (optimum - mean)), tol_mean)
    np.testing.assert_array_less(np.abs(delta_stddev + stddev), tol_stddev)

  def test_linear_q_mean_channel_has_zero_variance(self):
    """Q = c·a: every sample gives the same mean-channel update (c after preconditioning)."""
    mean = jnp.array([0.2, -0.4])
    stddev = jnp.array([0.7, 0.3])
    slope = jnp.array([1.5, -2.0])
    actions = distributions.DiagonalGaussian(mean, stddev).sample(jax.random.PRNGKey(1), 64)
    dq_da = jnp.broadcast_to(slope, actions.shape)

    for precondition, expected in ((True, slope), (False, slope / stddev**2)):
      per_sample = jax.vmap(lambda a, g, p=precondition: _gaussian_wpo_grads(  # pylint: disable=g-long-lambda
          mean, stddev, a[None], g[None], p)[0])
      mean_grads = per_sample(actions, dq_da)  # [64, D]
      np.testing.assert_allclose(np.std(mean_grads, axis=0), 0.0, atol=1e-6 * np.max(np.abs(expected)))
      np.testing.assert_allclose(-mean_grads[0], expected, rtol=1e-5)

  def test_one_dimensional_update_matches_likelihood_ratio_gradient(self):
    """1-D Gaussian: E[scaled WPO update] equals F⁻¹·E[Q ∇(μ,σ) log π] (Stein's lemma)."""
    mean, stddev = jnp.array([0.4]), jnp.array([0.8])
    q = lambda a: jnp.sum(jnp.sin(2.0 * a) - 0.3 * a**2, axis=-1)
    num_samples = 400_000
    actions = distributions.DiagonalGaussian(mean, stddev).sample(
        jax.random.PRNGKey(2), num_samples)
    dq_da = jax.vmap(jax.grad(q))(actions)
    wpo = _gaussian_wpo_grads(mean, stddev, actions, dq_da, False)

    def score_function_objective(mu, sigma):
      log_prob = distributions.DiagonalGaussian(mu, sigma).log_prob(actions)
      return -jnp.mean(jax.lax.stop_gradient(q(actions)) * log_prob)

    likelihood_ratio = jax.grad(score_function_objective, argnums=(0, 1))(mean, stddev)
    # Unpreconditioned WPO = F·(likelihood-ratio gradient) in (μ, σ): F = diag(1/σ², 2/σ²).
    np.testing.assert_allclose(wpo[0], likelihood_ratio[0] / stddev**2, atol=0.03)
    np.testing.assert_allclose(wpo[1], 2 * likelihood_ratio[1] / stddev**2, atol=0.06)


def _tiny_policy(params, observation):
  """A small nonlinear Gaussian policy network: observation [B, 2] → DiagonalGaussian [B, 2]."""
  hidden = jnp.tanh(observation @ params['w1'] + params['b1'])
  mean = hidden @ params['w_mean']
  stddev = jax.nn.softplus(hidden @ params['w_std']) + 0.1
  return distributions.DiagonalGaussian(mean, stddev)


def _tiny_params(key):
  keys = jax.random.split(key, 4)
  return {
      'w1': jax.random.normal(keys[0], (2, 8)),
      'b1': jax.random.normal(keys[1], (8,)),
      'w_mean': 0.5 * jax.random.normal(keys[2], (8, 2)),
      'w_std': 0.5 * jax.random.normal(keys[3], (8, 2)),
  }


def _state_dependent_q(observation, action):
  return jnp.sum(jnp.cos(action + observation) - 0.5 * (action * observation)**2, axis=-1)


class ReparameterisationTest(parameterized.TestCase):

  def test_preconditioned_surrogate_equals_reparameterisation_gradient(self):
    """Per sample, Σ_d ∂Q/∂a_d (∇θμ_d + ε_d∇θσ_d) — exactly the SVG(0) gradient of Q(μθ+σθε)."""
    params = _tiny_params(jax.random.PRNGKey(0))
    observation = jax.random.normal(jax.random.PRNGKey(1), (5, 2))
    noise = jax.random.normal(jax.random.PRNGKey(2), (7, 5, 2))

    def reparameterised(p):
      policy = _tiny_policy(p, observation)
      return -jnp.mean(_state_dependent_q(observation, policy.mean + policy.stddev * noise))

    def wpo(p):
      policy = _tiny_policy(p, observation)
      actions = jax.lax.stop_gradient(policy.mean + policy.stddev * noise)
      dq_da = jax.grad(lambda a: jnp.sum(_state_dependent_q(observation, a)))(actions)
      return losses.wpo_surrogate(policy.preconditioned().log_prob, actions, dq_da)

    chex.assert_trees_all_close(jax.grad(wpo)(params), jax.grad(reparameterised)(params),
                                rtol=1e-4, atol=1e-6)

  def test_unscaled_surrogate_is_fisher_times_reparameterisation_gradient(self):
    """Without preconditioning the μ channel carries 1/σ² and the σ channel 2/σ²."""
    mean = jnp.array([[0.1, -0.2], [0.5, 0.3]])
    stddev = jnp.array([[0.4, 0.9], [1.2, 0.6]])
    noise = jax.random.normal(jax.random.PRNGKey(3), (11, 2, 2))
    observation = jnp.array([[0.3, -0.7], [1.0, 0.2]])
    actions = mean + stddev * noise
    dq_da = jax.grad(lambda a: jnp.sum(_state_dependent_q(observation, a)))(actions)
    wpo = _gaussian_wpo_grads(mean, stddev, actions, dq_da, False)
    reparam = jax.grad(
        lambda m, s: -jnp.mean(_state_dependent_q(observation, m + s * noise)),
        argnums=(0, 1))(mean, stddev)
    np.testing.assert_allclose(wpo[0], reparam[0] / stddev**2, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(wpo[1], 2 * reparam[1] / stddev**2, rtol=1e-4, atol=1e-6)


def _mixture_log_prob(params, actions):
  """Mixture of K diagonal Gaussians: logits [K], means [K, D], log_stddevs [K, D]; a [..., D]."""
  a = actions[..., None, :]
  stddev = jnp.exp(params['log_stddevs'])
  component = jnp.sum(-0.5 * ((a - params['means']) / stddev)**2 - jnp.log(stddev) -
                      0.5 * jnp.log(2 * jnp.pi), axis=-1)  # [..., K]
  return jax.nn.logsumexp(jax.nn.log_softmax(params['logits']) + component, axis=-1)


def _mixture_score_numpy(params, actions):
  """Hand-derived ∇a log π for the mixture: Σ_k r_k(a) · (μ_k − a)/σ_k², in float64."""
  logits = np.asarray(params['logits'], np.float64)
  means = np.asarray(params['means'], np.float64)
  stddev = np.exp(np.asarray(params['log_stddevs'], np.float64))
  a = np.asarray(actions, np.float64)[:, None, :]
  log_w = logits - np.log(np.sum(np.exp(logits)))
  log_comp = np.sum(-0.5 * ((a - means) / stddev)**2 - np.log(stddev) - 0.5 * np.log(2 * np.pi),
                    axis=-1)
  joint = log_w + log_comp
  resp = np.exp(joint - joint.max(axis=-1, keepdims=True))
  resp /= resp.sum(axis=-1, keepdims=True)  # [S, K]
  return np.sum(resp[..., None] * (means - a) / stddev**2, axis=1)  # [S, D]


def test_mixture_surrogate_gradient_matches_finite_differences():
  """Gaussian mixture: ∇θ surrogate = −E[∇θ∇a log π · ∇aQ], the latter by central differences."""
  params = {
      'logits': jnp.array([0.3, -0.5, 0.1]),
      'means': jnp.array([[-1.0, 0.5], [0.8, -0.2], [0.1, 1.2]]),
      'log_stddevs': jnp.array([[-0.3, 0.1], [0.2, -0.5], [-0.1, 0.0]]),
  }
  actions = jax.random.normal(jax.random.PRNGKey(0), (32, 2))
  dq_da = jax.random.normal(jax.random.PRNGKey(1), (32, 2))
  grads = jax.grad(lambda p: losses.wpo_surrogate(
      lambda a: _mixture_log_prob(p, a), actions, dq_da))(params)

  def objective(p):
    return -np.mean(np.sum(_mixture_score_numpy(p, actions) * np.asarray(dq_da, np.float64), -1))

  flat = {k: np.asarray(v, np.float64) for k, v in params.items()}
  step = 1e-5
  for name, value in flat.items():
    expected = np.zeros_like(value)
    for index in np.ndindex(value.shape):
      plus = {k: v.copy() for k, v in flat.items()}
      minus = {k: v.copy() for k, v in flat.items()}
      plus[name][index] += step
      minus[name][index] -= step
      expected[index] = (objective(plus) - objective(minus)) / (2 * step)
    np.testing.assert_allclose(grads[name], expected, rtol=2e-3, atol=2e-4, err_msg=name)


def test_natural_gradient_scaling_keeps_values_and_rescales_gradients():
  mean = jnp.array([0.2, -1.3, 0.7])
  stddev = jnp.array([0.3, 1.1, 2.0])
  actions = jnp.array([[0.0, 0.5, -1.0], [1.0, -2.0, 3.0]])
  plain = distributions.DiagonalGaussian(mean, stddev)
  np.testing.assert_allclose(plain.preconditioned().log_prob(actions), plain.log_prob(actions),
                             rtol=1e-6)

  def log_prob_sum(m, s, precondition):
    policy = distributions.DiagonalGaussian(m, s)
    policy = policy.preconditioned() if precondition else policy
    return jnp.sum(policy.log_prob(actions))

  raw = jax.grad(log_prob_sum, argnums=(0, 1))(mean, stddev, False)
  scaled = jax.grad(log_prob_sum, argnums=(0, 1))(mean, stddev, True)
  np.testing.assert_allclose(scaled[0], raw[0] * stddev**2, rtol=1e-5)
  np.testing.assert_allclose(scaled[1], raw[1] * stddev**2 / 2, rtol=1e-5)


def test_decoupled_kl_matches_closed_form_and_vanishes_at_target():
  target_mean, target_stddev = jnp.array([0.5, -1.0]), jnp.array([0.4, 2.0])
  mean, stddev = jnp.array([0.7, -1.0]), jnp.array([0.4, 1.0])
  kl = losses.decoupled_gaussian_kl(target_mean, target_stddev, mean, stddev)
  np.testing.assert_allclose(kl.mean, [0.2**2 / (2 * 0.16), 0.0], atol=1e-6)
  np.testing.assert_allclose(kl.stddev, [0.0, np.log(0.5) + 4.0 / 2.0 - 0.5], rtol=1e-6)
  # Gradients reach only the online side.
  grads = jax.grad(lambda tm: jnp.sum(losses.decoupled_gaussian_kl(tm, target_stddev, mean,
                                                                   stddev).mean))(target_mean)
  np.testing.assert_allclose(grads, 0.0)


def test_lagrangian_penalty_raises_duals_only_while_violated():
  kl = losses.DecoupledKL(mean=jnp.array([[0.5, 0.0]]), stddev=jnp.array([[0.0, 0.0]]))

  def dual_gradients(epsilon_mean):
    return jax.grad(lambda lm, ls: losses.lagrangian_kl_penalty(kl, lm, ls, epsilon_mean, 1e-3)
                    .loss, argnums=(0, 1))(jnp.zeros(2), jnp.zeros(2))

  grad_mean, grad_stddev = dual_gradients(0.1)
  # Dimension 0 violates its bound (0.5 > 0.1): gradient descent increases its dual.
  assert grad_mean[0] < 0 and grad_mean[1] > 0
  assert np.all(grad_stddev > 0)
  # Sizes: ∂/∂λ = softplus'(λ)·(ε − KL) with softplus'(0) = ½.
  np.testing.assert_allclose(grad_mean, 0.5 * (0.1 - np.array([0.5, 0.0])), rtol=1e-6)
  np.testing.assert_allclose(grad_stddev, 0.5 * 1e-3, rtol=1e-5)
  fixed = losses.fixed_kl_penalty(kl, 2.0, 3.0)
  np.testing.assert_allclose(fixed.loss, 2.0 * 0.5)


class NStepTest(parameterized.TestCase):

  def test_terminal_inside_the_window_stops_rewards_and_bootstrap(self):
    gamma = 0.9
    rewards = jnp.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])  # [n=3, B=2]
    discounts = jnp.array([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])  # column 0 ends after r_1.
    ret, discount = losses.n_step_transition(rewards, discounts, gamma)
    # Column 0: 1 + 0.9·2 (r_2 is never received); column 1: 1 + 0.9·2 + 0.81·3.
    np.testing.assert_allclose(ret, [2.8, 5.23], rtol=1e-6)
    # Acme convention: D = γⁿ⁻¹ Π d_k.
    np.testing.assert_allclose(discount, [0.0, 0.81], rtol=1e-6)

    q_tm1 = jnp.array([1.0, 2.0])
    q_t = jnp.array([[4.0, 10.0], [6.0, 20.0]])  # [N=2, B=2]; bootstrap means 5 and 15.
    td = losses.expected_sarsa_td_error(q_tm1, ret, gamma * discount, q_t)
    np.testing.assert_allclose(td, [2.8 - 1.0, 5.23 + 0.729 * 15.0 - 2.0], rtol=1e-6)

  def test_td_target_is_held_constant(self):
    q_t = jnp.array([[1.0], [3.0]])
    grad = jax.grad(lambda q: jnp.sum(losses.expected_sarsa_td_error(
        jnp.zeros(1), jnp.ones(1), jnp.ones(1), q)))(q_t)
    np.testing.assert_allclose(grad, 0.0)


def test_penalty_sizes_with_a_batch_match_closed_forms():
  """B = 4, D = 3: both penalties average the KL over the batch and sum it over D."""
  rng = np.random.default_rng(0)
  kl = losses.DecoupledKL(mean=jnp.asarray(rng.uniform(0, 0.2, (4, 3)), jnp.float32),
                          stddev=jnp.asarray(rng.uniform(0, 0.01, (4, 3)), jnp.float32))
  batch_mean, batch_stddev = np.mean(kl.mean, 0), np.mean(kl.stddev, 0)  # [D]

  fixed = losses.fixed_kl_penalty(kl, 2.0, 30.0)
  np.testing.assert_allclose(fixed.loss, 2.0 * np.sum(batch_mean) + 30.0 * np.sum(batch_stddev),
                             rtol=1e-5)
  grads = jax.grad(lambda k: losses.fixed_kl_penalty(k, 2.0, 30.0).loss)(kl)
  np.testing.assert_allclose(grads.mean, np.full((4, 3), 2.0 / 4), rtol=1e-6)
  np.testing.assert_allclose(grads.stddev, np.full((4, 3), 30.0 / 4), rtol=1e-6)

  log_mean, log_stddev = jnp.array([-1.0, 0.0, 2.0]), jnp.array([0.5, -0.5, 1.0])
  eps_mean, eps_stddev = 0.05, 0.004
  softplus = lambda x: np.log1p(np.exp(np.asarray(x, np.float64)))
  sigmoid = lambda x: 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))
  alpha_mean, alpha_stddev = softplus(log_mean) + 1e-8, softplus(log_stddev) + 1e-8

  def lagrange(k, lm, ls):
    return losses.lagrangian_kl_penalty(k, lm, ls, eps_mean, eps_stddev).loss

  penalty = losses.lagrangian_kl_penalty(kl, log_mean, log_stddev, eps_mean, eps_stddev)
  np.testing.assert_allclose(penalty.weight_mean, alpha_mean, rtol=1e-6)
  np.testing.assert_allclose(penalty.weight_stddev, alpha_stddev, rtol=1e-6)
  # Value: α·KL (policy side) + α·(ε − KL) (dual side) = Σ_d α_d ε.
  np.testing.assert_allclose(
      penalty.loss, np.sum(alpha_mean) * eps_mean + np.sum(alpha_stddev) * eps_stddev, rtol=1e-5)
  grad_kl, grad_mean, grad_stddev = jax.grad(lagrange, argnums=(0, 1, 2))(kl, log_mean,
                                                                          log_stddev)
  # The policy sees α_d / B per state; the duals see softplus'(λ)(ε − mean_b KL_d).
  np.testing.assert_allclose(grad_kl.mean, np.broadcast_to(alpha_mean / 4, (4, 3)), rtol=1e-5)
  np.testing.assert_allclose(grad_kl.stddev, np.broadcast_to(alpha_stddev / 4, (4, 3)),
                             rtol=1e-5)
  np.testing.assert_allclose(grad_mean, sigmoid(log_mean) * (eps_mean - batch_mean), rtol=1e-4)
  np.testing.assert_allclose(grad_stddev, sigmoid(log_stddev) * (eps_stddev - batch_stddev),
                             rtol=1e-4)


def test_scale_gradient_is_identity_forward():
  x = jnp.array([1.0, -2.0])
  np.testing.assert_allclose(losses.scale_gradient(x, jnp.array([3.0, 0.5])), x)
  np.testing.assert_allclose(jax.grad(lambda y: jnp.sum(losses.scale_gradient(y, 3.0)))(x), 3.0)


if __name__ == '__main__':
  pytest.main([__file__])
