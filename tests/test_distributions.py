"""Policy distributions (wpo_jax/distributions.py) and the Monte-Carlo Fisher (wpo_jax/losses.py).

Densities are checked by numerical integration, sampling by moments and histograms, the WPO
surrogate's gradient against finite differences of hand-derived scores in float64, and the
preconditioners and Fisher against closed forms.
"""

import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from wpo_jax import distributions
from wpo_jax import losses

MIXTURE_1D = distributions.MixtureGaussian(
    logits=jnp.array([0.4, -0.3, 0.0]),
    mean=jnp.array([[-1.5], [0.2], [1.8]]),
    stddev=jnp.array([[0.4], [0.7], [0.3]]))
TANH_1D = distributions.TanhGaussian(mean=jnp.array([0.4]), stddev=jnp.array([0.8]))


# Jitted once per distribution type: eager JAX would compile every small op separately.
@functools.partial(jax.jit, static_argnums=2)
def _sample(distribution, seed, num_samples):
  return distribution.sample(jax.random.PRNGKey(seed), num_samples)


@jax.jit
def _log_prob(distribution, actions):
  return distribution.log_prob(actions)


def _trapezoid(values, grid):
  values, grid = np.asarray(values, np.float64), np.asarray(grid, np.float64)
  return float(np.sum(0.5 * (values[1:] + values[:-1]) * np.diff(grid)))


def _density_on(distribution, grid):
  """Density at grid points [G] of a 1-D distribution, as float64."""
  return np.exp(np.asarray(_log_prob(distribution, jnp.asarray(grid, jnp.float32)[:, None]),
                           np.float64))


def _mixture_weights(mixture):
  logits = np.asarray(mixture.logits, np.float64)
  return np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()


# Densities and sampling.


def test_mixture_density_integrates_to_one_in_one_and_two_dimensions():
  grid = np.linspace(-6.0, 6.0, 24001)
  assert _trapezoid(_density_on(MIXTURE_1D, grid), grid) == pytest.approx(1.0, abs=1e-4)

  mixture = distributions.MixtureGaussian(
      logits=jnp.array([0.2, -0.6]),
      mean=jnp.array([[-1.0, 0.5], [1.0, -0.8]]),
      stddev=jnp.array([[0.5, 0.9], [0.6, 0.4]]))
  axis = np.linspace(-5.0, 5.0, 801)
  x, y = np.meshgrid(axis, axis, indexing='ij')
  points = jnp.asarray(np.stack([x, y], axis=-1), jnp.float32)  # [G, G, 2]
  density = np.exp(np.asarray(_log_prob(mixture, points), np.float64))
  inner = np.array([_trapezoid(row, axis) for row in density])
  assert _trapezoid(inner, axis) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize('stddev', [0.3, 0.8, 1.5])
def test_tanh_gaussian_density_integrates_to_one(stddev):
  tanh = distributions.TanhGaussian(jnp.array([0.4]), jnp.array([stddev]))
  # Integrate over u = atanh(a) (where the density is smooth) with da = (1 − a²) du.
  u = np.linspace(-7.0, 7.0, 40001)
  a = np.tanh(u)
  inside = np.abs(a) < 1.0 - distributions.TANH_EPSILON
  density = _density_on(tanh, a[inside]) * (1.0 - a[inside]**2)
  assert _trapezoid(density, u[inside]) == pytest.approx(1.0, abs=2e-4)


def _histogram_matches_density(samples, distribution, edges):
  counts, _ = np.histogram(samples, bins=edges)
  fine = np.linspace(edges[0], edges[-1], 20 * (len(edges) - 1) + 1)
  density = _density_on(distribution, fine)
  expected = np.array([_trapezoid(density[20 * i:20 * i + 21], fine[20 * i:20 * i + 21])
                       for i in range(len(edges) - 1)])
  observed = counts / len(samples)
  # Binomial standard error per bin, 5σ.
  tolerance = 5.0 * np.sqrt(expected * (1.0 - expected) / len(samples)) + 1e-4
  np.testing.assert_array_less(np.abs(observed - expected), tolerance)


def test_mixture_samples_match_moments_and_histogram():
  samples = np.asarray(_sample(MIXTURE_1D, 0, 200_000))[:, 0]
  weights = _mixture_weights(MIXTURE_1D)
  means = np.asarray(MIXTURE_1D.mean)[:, 0]
  variances = np.asarray(MIXTURE_1D.stddev)[:, 0]**2
  mean = np.sum(weights * means)
  variance = np.sum(weights * (variances + means**2)) - mean**2
  assert np.mean(samples) == pytest.approx(mean, abs=5 * np.sqrt(variance / len(samples)))
  assert np.var(samples) == pytest.approx(variance, rel=0.02)
  _histogram_matches_density(samples, MIXTURE_1D, np.linspace(-3.5, 3.5, 29))


def test_mixture_samples_keep_batch_shape_and_follow_each_state():
  mixture = distributions.MixtureGaussian(
      logits=jnp.array([[10.0, -10.0], [-10.0, 10.0]]),  # state 0 → component 0, 1 → 1.
      mean=jnp.array([[[-3.0, 1.0], [3.0, -1.0]], [[-3.0, 1.0], [3.0, -1.0]]]),
      stddev=jnp.full((2, 2, 2), 0.1))
  samples = _sample(mixture, 1, 500)
  assert samples.shape == (500, 2, 2)
  np.testing.assert_allclose(np.mean(samples, axis=0), [[-3.0, 1.0], [3.0, -1.0]], atol=0.03)
  assert mixture.log_prob(samples).shape == (500, 2)


def test_tanh_gaussian_samples_stay_inside_and_match_density():
  samples = np.asarray(_sample(TANH_1D, 2, 200_000))[:, 0]
  grid = np.linspace(-1.0 + 1e-6, 1.0 - 1e-6, 200001)
  density = _density_on(TANH_1D, grid)
  mean = _trapezoid(grid * density, grid)
  variance = _trapezoid((grid - mean)**2 * density, grid)
  assert np.mean(samples) == pytest.approx(mean, abs=5 * np.sqrt(variance / len(samples)))
  assert np.var(samples) == pytest.approx(variance, rel=0.02)
  _histogram_matches_density(samples, TANH_1D, np.linspace(-0.99, 0.99, 23))

  # Even a saturated tanh gives actions strictly inside the box and finite log-densities.
  saturated = distributions.TanhGaussian(jnp.array([30.0, -30.0]), jnp.array([1.0, 1.0]))
  actions = _sample(saturated, 3, 100)
  assert float(jnp.max(jnp.abs(actions))) < 1.0
  assert bool(jnp.all(jnp.isfinite(saturated.log_prob(actions))))
  assert bool(jnp.all(jnp.isfinite(jax.grad(lambda a: jnp.sum(saturated.log_prob(a)))(actions))))


def _grid_argmax(distribution, axes):
  """The grid point of highest density: an independent brute-force mode."""
  points = np.stack(np.meshgrid(*axes, indexing='ij'), axis=-1).reshape(-1, len(axes))
  return points[np.argmax(distribution.log_prob(jnp.asarray(points)))]


def test_mixture_mode_is_the_highest_density_point():
  grid = np.linspace(-3.0, 3.0, 6001)
  np.testing.assert_allclose(MIXTURE_1D.mode(), _grid_argmax(MIXTURE_1D, [grid]), atol=2e-3)
  # Overlapping components: the mode lies between them, not at either mean.
  for logits, mean in (([0.0, 1.0], [[1.0, 2.0], [2.5, 3.0]]),
                       ([2.0, 1.0], [[-1.0, 0.5], [0.5, -0.5]])):
    mixture = distributions.MixtureGaussian(jnp.array(logits), jnp.array(mean),
                                            jnp.array([[1.0, 0.8], [0.9, 1.1]]))
    axis = np.linspace(-2.0, 4.0, 601)
    np.testing.assert_allclose(mixture.mode(), _grid_argmax(mixture, [axis, axis]), atol=0.02)
  # Equal weights, symmetric and unimodal (separation 1 < 2σ): the mode is 0, not ±0.5.
  symmetric = distributions.MixtureGaussian(jnp.zeros(2), jnp.array([[-0.5], [0.5]]),
                                            jnp.full((2, 1), 0.6))
  np.testing.assert_allclose(symmetric.mode(), [0.0], atol=1e-3)
  # Far apart: the denser component's mean. Batched over a leading axis.
  batched = distributions.MixtureGaussian(
      logits=jnp.array([[0.0, 1.0], [2.0, 1.0]]),
      mean=jnp.array([[[1.0, 2.0], [9.0, 10.0]], [[5.0, 6.0], [-7.0, 8.0]]]),
      stddev=jnp.ones((2, 2, 2)))
  np.testing.assert_allclose(batched.mode(), [[9.0, 10.0], [5.0, 6.0]], atol=1e-5)


def test_tanh_gaussian_mode_is_the_squashed_mean():
  np.testing.assert_allclose(TANH_1D.mode(), np.tanh([0.4]), rtol=1e-6)


# The WPO surrogate: gradients against finite differences of hand-derived scores (float64).


def _gaussian_score(fields, actions):
  mean, stddev = fields['mean'], fields['stddev']
  return (mean - actions) / stddev**2


def _tanh_gaussian_score(fields, actions):
  """∇a [log N(atanh a; μ, σ) − Σ log(1 − a²)] = ((μ − u)/σ² + 2a) / (1 − a²)."""
  u = np.arctanh(actions)
  return ((fields['mean'] - u) / fields['stddev']**2 + 2 * actions) / (1 - actions**2)


def _mixture_score(fields, actions):
  """Σ_k r_k(a) (μ_k − a)/σ_k², r_k the posterior responsibilities."""
  logits, means, stddev = fields['logits'], fields['mean'], fields['stddev']
  a = actions[:, None, :]  # [S, 1, D]
  log_w = logits - np.log(np.sum(np.exp(logits)))
  joint = log_w + np.sum(-0.5 * ((a - means) / stddev)**2 - np.log(stddev), axis=-1)
  resp = np.exp(joint - joint.max(axis=-1, keepdims=True))
  resp /= resp.sum(axis=-1, keepdims=True)
  return np.sum(resp[..., None] * (means - a) / stddev**2, axis=1)


def _finite_difference_wpo_gradient(score_fn, fields, actions, dq_da):
  """∇ of −mean_i Σ_d score(a_i)_d ∂Q/∂a_d(a_i) by central differences, per field."""
  fields = {k: np.asarray(v, np.float64) for k, v in fields.items()}
  actions, dq_da = np.asarray(actions, np.float64), np.asarray(dq_da, np.float64)
  objective = lambda f: -np.mean(np.sum(score_fn(f, actions) * dq_da, axis=-1))
  step = 1e-6
  grads = {}
  for name, value in fields.items():
    grads[name] = np.zeros_like(value)
    for index in np.ndindex(value.shape):
      plus = {k: v.copy() for k, v in fields.items()}
      minus = {k: v.copy() for k, v in fields.items()}
      plus[name][index] += step
      minus[name][index] -= step
      grads[name][index] = (objective(plus) - objective(minus)) / (2 * step)
  return grads


HEADS = {
    'gaussian': (distributions.DiagonalGaussian(mean=jnp.array([0.3, -0.4]),
                                                stddev=jnp.array([0.5, 0.9])),
                 _gaussian_score),
    'tanh_gaussian': (distributions.TanhGaussian(mean=jnp.array([0.3, -0.4]),
                                                 stddev=jnp.array([0.5, 0.9])),
                      _tanh_gaussian_score),
    'mixture': (distributions.MixtureGaussian(
        logits=jnp.array([0.3, -0.5, 0.1]),
        mean=jnp.array([[-1.0, 0.5], [0.8, -0.2], [0.1, 1.2]]),
        stddev=jnp.array([[0.7, 1.1], [1.2, 0.6], [0.9, 1.0]])), _mixture_score),
}


def _closed_form_preconditioning(name, fields, grads):
  """What `preconditioned()` promises to do to the plain gradients, in float64."""
  if name in ('gaussian', 'tanh_gaussian'):
    variance = fields['stddev']**2
    return {'mean': grads['mean'] * variance, 'stddev': grads['stddev'] * variance / 2}
  weights = np.maximum(_mixture_weights(distributions.MixtureGaussian(**fields)),
                       distributions.MIN_PRECONDITIONING_WEIGHT)
  variance = fields['stddev']**2 / weights[:, None]
  natural_logits = grads['logits'] / weights
  return {'logits': natural_logits - np.mean(natural_logits),
          'mean': grads['mean'] * variance, 'stddev': grads['stddev'] * variance / 2}


@pytest.mark.parametrize('name', sorted(HEADS))
@pytest.mark.parametrize('precondition', [False, True])
def test_surrogate_gradient_matches_finite_differences_of_the_score(name, precondition):
  """∇θ wpo_surrogate = −E[∇θ∇a log π · ∇aQ], plain and after `preconditioned()`."""
  policy, score_fn = HEADS[name]
  actions = _sample(policy, 0, 32)  # [32, 2]
  dq_da = jax.random.normal(jax.random.PRNGKey(1), actions.shape)

  def surrogate(p):
    moved = p.preconditioned() if precondition else p
    return losses.wpo_surrogate(moved.log_prob, actions, dq_da)

  grads = jax.jit(jax.grad(surrogate))(policy)._asdict()
  fields = {k: np.asarray(v, np.float64) for k, v in policy._asdict().items()}
  expected = _finite_difference_wpo_gradient(score_fn, fields, actions, dq_da)
  if precondition:
    expected = _closed_form_preconditioning(name, fields, expected)
  for field, value in expected.items():
    scale = np.max(np.abs(value))
    np.testing.assert_allclose(grads[field], value, rtol=2e-3, atol=1e-3 * scale, err_msg=field)


@pytest.mark.parametrize('name', sorted(HEADS))
def test_preconditioning_keeps_log_densities(name):
  policy, _ = HEADS[name]
  actions = _sample(policy, 2, 16)
  np.testing.assert_allclose(_log_prob(policy.preconditioned(), actions),
                             _log_prob(policy, actions), rtol=1e-5, atol=1e-5)


# KL to the target.


def test_gaussian_and_tanh_kl_are_the_decoupled_gaussian_kl():
  target = distributions.DiagonalGaussian(jnp.array([0.5, -1.0]), jnp.array([0.4, 2.0]))
  online = distributions.DiagonalGaussian(jnp.array([0.7, -1.0]), jnp.array([0.4, 1.0]))
  expected = losses.decoupled_gaussian_kl(*target, *online)
  for kind in (distributions.DiagonalGaussian, distributions.TanhGaussian):
    kl = kind(*online).kl_from(kind(*target))
    np.testing.assert_allclose(kl.mean, expected.mean, rtol=1e-6)
    np.testing.assert_allclose(kl.stddev, expected.stddev, rtol=1e-6)


def _monte_carlo_kl(target, online, num_samples=100_000):
  """E_π̄[log π̄ − log π] and its standard error."""
  actions = _sample(target, 7, num_samples)
  log_ratios = np.asarray(_log_prob(target, actions) - _log_prob(online, actions), np.float64)
  return np.mean(log_ratios), np.std(log_ratios) / np.sqrt(num_samples)


def test_tanh_kl_is_the_exact_kl_when_only_the_mean_moves():
  """KL is invariant under tanh: with σ = σ̄ the decoupled mean part is the whole KL."""
  target = distributions.TanhGaussian(jnp.array([0.2, -0.5]), jnp.array([0.6, 0.9]))
  online = target._replace(mean=jnp.array([0.5, -0.2]))
  kl = online.kl_from(target)
  np.testing.assert_allclose(kl.stddev, 0.0, atol=1e-7)
  exact, standard_error = _monte_carlo_kl(target, online)
  assert float(jnp.sum(kl.mean)) == pytest.approx(exact, abs=5 * standard_error)


def test_mixture_kl_reduces_to_gaussian_bounds_the_exact_kl_and_vanishes_at_target():
  one = lambda m, s: distributions.MixtureGaussian(jnp.zeros(1), m[None], s[None])
  mean, stddev = jnp.array([0.7, -1.0]), jnp.array([0.4, 1.0])
  target_mean, target_stddev = jnp.array([0.5, -1.0]), jnp.array([0.4, 2.0])
  kl = one(mean, stddev).kl_from(one(target_mean, target_stddev))
  expected = losses.decoupled_gaussian_kl(target_mean, target_stddev, mean, stddev)
  np.testing.assert_allclose(kl.mean, expected.mean, rtol=1e-6)
  np.testing.assert_allclose(kl.stddev, expected.stddev, rtol=1e-6)

  target = MIXTURE_1D
  zero = target.kl_from(target)
  np.testing.assert_allclose(zero.mean, 0.0, atol=1e-7)
  np.testing.assert_allclose(zero.stddev, 0.0, atol=1e-7)
  # Moving means and weights (σ fixed): the decoupled terms sum to the joint KL, an upper bound
  # on the exact KL(π̄ ‖ π).
  online = target._replace(logits=jnp.array([0.0, 0.5, -0.2]),
                           mean=target.mean + jnp.array([[0.3], [-0.2], [0.1]]))
  kl = online.kl_from(target)
  bound = float(jnp.sum(kl.mean) + jnp.sum(kl.stddev))
  exact, standard_error = _monte_carlo_kl(target, online)
  assert 0.0 < exact - 5 * standard_error and exact + 5 * standard_error < bound
  assert kl.mean.shape == (1,) and kl.stddev.shape == (1,)
  # Gradients reach only the online side.
  grads = jax.grad(lambda t: jnp.sum(online.kl_from(t).mean))(target)
  for leaf in jax.tree_util.tree_leaves(grads):
    np.testing.assert_allclose(leaf, 0.0)


# Monte-Carlo Fisher.


def _assert_fisher_estimate_matches(distribution, expected, seed):
  """F̂ from 20 independent batches of 10⁴ samples is within 5 standard errors of `expected`."""
  num_batches, batch_size = 20, 10_000
  actions = _sample(distribution, seed, num_batches * batch_size)
  actions = actions.reshape((num_batches, batch_size) + actions.shape[1:])
  estimates = np.asarray(
      jax.jit(jax.vmap(losses.monte_carlo_fisher, in_axes=(None, 0)))(distribution, actions),
      np.float64)  # [20, P, P]
  standard_error = np.std(estimates, axis=0, ddof=1) / np.sqrt(num_batches)
  error = np.abs(np.mean(estimates, axis=0) - expected)
  np.testing.assert_array_less(error, 5 * standard_error + 1e-3 * np.max(np.abs(expected)))


@pytest.mark.parametrize('kind', [distributions.DiagonalGaussian, distributions.TanhGaussian])
def test_monte_carlo_fisher_of_one_dimensional_gaussian_is_diag_one_two_over_variance(kind):
  """F = diag(1/σ², 2/σ²) in (μ, σ); tanh leaves the Fisher unchanged."""
  policy = kind(jnp.array([0.3]), jnp.array([0.6]))
  _assert_fisher_estimate_matches(policy, np.diag([1 / 0.36, 2 / 0.36]), seed=3)


def test_monte_carlo_fisher_of_separated_mixture_is_the_joint_fisher():
  """Non-overlapping components: the Fisher `MixtureGaussian.preconditioned` inverts."""
  weights = np.array([0.3, 0.7])
  mixture = distributions.MixtureGaussian(jnp.log(jnp.asarray(weights, jnp.float32)),
                                          jnp.array([[-6.0], [6.0]]), jnp.array([[0.5], [0.8]]))
  variances = np.array([0.25, 0.64])
  expected = np.zeros((6, 6))  # ravel order: logits [2], mean [2, 1], stddev [2, 1].
  expected[:2, :2] = np.diag(weights) - np.outer(weights, weights)
  expected[2:4, 2:4] = np.diag(weights / variances)
  expected[4:, 4:] = np.diag(2 * weights / variances)
  _assert_fisher_estimate_matches(mixture, expected, seed=4)


def test_precondition_gradient_is_identity_forward_and_matrix_backward():
  x = jnp.array([0.5, -1.0, 2.0])
  matrix = jnp.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 3.0]])
  np.testing.assert_array_equal(losses.precondition_gradient(x, matrix), x)
  weights = jnp.array([1.0, -2.0, 0.5])
  grad = jax.grad(lambda y: jnp.sum(weights * losses.precondition_gradient(y, matrix)))(x)
  np.testing.assert_allclose(grad, matrix @ weights, rtol=1e-6)


def test_fisher_preconditioned_solves_with_the_damped_fisher_of_each_state():
  """∇φ_b = (F̂_b + λI)⁻¹ g_b per state b, with g_b the plain gradient and F̂_b built here from
  the Jacobian of the N log-densities, solved in float64. (The code is generic over heads; the
  mixture has the most parameters.)"""
  single, _ = HEADS['mixture']
  # Two states: the head's parameters and a perturbed copy.
  policy = jax.tree_util.tree_map(lambda x: jnp.stack([x, x * 1.1 + 0.05]), single)
  actions = _sample(policy, 8, 12)  # [N, B, D]
  dq_da = jax.random.normal(jax.random.PRNGKey(9), actions.shape)
  damping = 0.1
  surrogate = lambda p, moved: losses.wpo_surrogate(moved.log_prob, actions, dq_da)
  preconditioned = jax.jit(jax.grad(
      lambda p: surrogate(p, losses.fisher_preconditioned(p, actions, damping))))(policy)
  plain = jax.jit(jax.grad(lambda p: surrogate(p, p)))(policy)
  for b in range(2):
    state = jax.tree_util.tree_map(lambda x, b=b: x[b], policy)
    flat, unravel = jax.flatten_util.ravel_pytree(state)
    scores = np.asarray(jax.jacobian(lambda f, b=b: unravel(f).log_prob(actions[:, b]))(flat),
                        np.float64)  # [N, P]
    fisher = scores.T @ scores / len(scores) + damping * np.eye(len(flat))
    plain_b = np.asarray(jax.flatten_util.ravel_pytree(
        jax.tree_util.tree_map(lambda x, b=b: x[b], plain))[0], np.float64)
    expected = np.linalg.solve(fisher, plain_b)
    actual = jax.flatten_util.ravel_pytree(
        jax.tree_util.tree_map(lambda x, b=b: x[b], preconditioned))[0]
    np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-4 * np.max(np.abs(expected)))


def _joint_monte_carlo_kl(target, online, num_samples=200_000, seed=11):
  """E over (k, a) ~ π̄ of log w̄_k N̄_k(a) − log w_k N_k(a), and its standard error (float64).

  The KL between the joint (component, action) distributions, sampled independently of
  `MixtureGaussian`: numpy draws, numpy densities.
  """
  rng = np.random.default_rng(seed)
  t_logits, t_mean, t_std = (np.asarray(x, np.float64) for x in target)
  o_logits, o_mean, o_std = (np.asarray(x, np.float64) for x in online)
  t_w = np.exp(t_logits - np.logaddexp.reduce(t_logits))
  o_w = np.exp(o_logits - np.logaddexp.reduce(o_logits))
  k = rng.choice(len(t_w), size=num_samples, p=t_w)
  a = t_mean[k] + t_std[k] * rng.standard_normal((num_samples, t_mean.shape[-1]))

  def log_normal(mean, std):
    return np.sum(-0.5 * ((a - mean) / std)**2 - np.log(std) - 0.5 * np.log(2 * np.pi), -1)

  log_ratio = (np.log(t_w[k]) + log_normal(t_mean[k], t_std[k]) -
               np.log(o_w[k]) - log_normal(o_mean[k], o_std[k]))
  return np.mean(log_ratio), np.std(log_ratio) / np.sqrt(num_samples)


def _hand_mixture_bound(target, online):
  """The decoupled joint bound per dimension, in numpy: (mean part [D], stddev part [D])."""
  t_logits, t_mean, t_std = (np.asarray(x, np.float64) for x in target)
  o_logits, o_mean, o_std = (np.asarray(x, np.float64) for x in online)
  t_w = np.exp(t_logits - np.logaddexp.reduce(t_logits))
  o_w = np.exp(o_logits - np.logaddexp.reduce(o_logits))
  categorical = np.sum(t_w * np.log(t_w / o_w))
  action_dim = t_mean.shape[-1]
  mean_part = np.sum(t_w[:, None] * (o_mean - t_mean)**2 / (2 * t_std**2), 0)
  ratio = (t_std / o_std)**2
  stddev_part = np.sum(t_w[:, None] * 0.5 * (ratio - 1 - np.log(ratio)), 0)
  return mean_part + categorical / action_dim, stddev_part


def _checked_mixture_bound(target, online):
  """Σ_d of both parts of online.kl_from(target), after checking each part against the hand
  formula per dimension."""
  kl = online.kl_from(target)
  hand_mean, hand_stddev = _hand_mixture_bound(target, online)
  np.testing.assert_allclose(kl.mean, hand_mean, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(kl.stddev, hand_stddev, rtol=1e-5, atol=1e-7)
  return float(jnp.sum(kl.mean) + jnp.sum(kl.stddev))


def test_mixture_kl_with_moving_stddev_is_the_joint_kl_and_bounds_the_exact_kl():
  """K = 3, D = 3, weights, σ and (second case) means all move: each part per dimension equals
  the hand-written joint bound (w̄_k on every component term, KL(w̄‖w) spread over D), the parts
  sum to a Monte-Carlo estimate of the joint KL when the means stay, and bound the mixture KL."""
  target = distributions.MixtureGaussian(
      logits=jnp.array([0.3, -0.4, 0.1]),
      mean=jnp.array([[-1.0, 0.5, 0.0], [0.4, -0.6, 1.0], [1.2, 1.0, -0.8]]),
      stddev=jnp.array([[0.4, 0.6, 0.5], [0.7, 0.3, 0.5], [0.5, 0.5, 0.8]]))
  # Means fixed: the decoupled parts sum to the joint KL exactly, whatever the σ moves.
  online = target._replace(logits=jnp.array([-0.5, 0.6, 0.2]),
                           stddev=target.stddev * jnp.array([[1.4, 0.7, 1.0], [0.8, 1.3, 1.1],
                                                             [1.2, 1.0, 0.6]]))
  bound = _checked_mixture_bound(target, online)
  joint, joint_error = _joint_monte_carlo_kl(target, online)
  assert bound == pytest.approx(joint, abs=4 * joint_error + 1e-4)
  exact, exact_error = _monte_carlo_kl(target, online)
  assert 0.0 < exact and exact - 4 * exact_error < bound

  # Means move too, σ grows (σ ≥ σ̄, where the decoupled mean part, over σ̄², bounds the joint
  # mean term, over σ²): the parts still bound the joint KL, and so the mixture KL.
  online = online._replace(mean=target.mean + jnp.array([[0.3, -0.2, 0.1], [-0.1, 0.2, 0.3],
                                                         [0.2, 0.0, -0.3]]),
                           stddev=target.stddev * jnp.array([[1.4, 1.1, 1.0], [1.2, 1.3, 1.1],
                                                             [1.2, 1.0, 1.5]]))
  bound = _checked_mixture_bound(target, online)
  joint, joint_error = _joint_monte_carlo_kl(target, online)
  exact, exact_error = _monte_carlo_kl(target, online)
  assert joint - 4 * joint_error < bound
  assert 0.0 < exact - 4 * exact_error and exact < joint + 4 * joint_error
