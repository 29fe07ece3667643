"""Mixture toy: a 1-D bandit with two optima; WPO vs likelihood-ratio and reparameterisation.

  python -m experiments.toy_mixture --out=toy_mixture.png

Q(a) = log(exp(−(a−2)²/(2w²)) + exp(−(a+2)²/(2w²))), w = 0.3: two equal peaks at ±2 (Q ≈ 0),
about −22 half-way between them, and ∇aQ known exactly. A policy starts between the peaks and
takes plain SGD steps with the same learning rate and N action samples per step for every method:

  wpo                 2-Gaussian mixture, WPO surrogate with exact ∇aQ through the mixture's
                      closed-form preconditioner (`MixtureGaussian.preconditioned`).
  likelihood_ratio    the same mixture, score-function gradient E[(Q(a) − b) ∇θ log π(a)] with a
                      leave-one-out baseline b (unbiased).
  reparameterisation  a single Gaussian, gradient of mean_i Q(μ + σ ε_i). (For a Gaussian the
                      preconditioned WPO update is exactly this gradient, see tests/test_losses.py.)
  wpo_fisher          (optional, --methods) WPO on the mixture preconditioned by the damped
                      Monte-Carlo Fisher from the same N samples (`losses.fisher_preconditioned`).

Parameters are the distribution's own fields (logits, means, standard deviations), updated by
plain SGD rather than Adam, whose per-parameter normalisation would undo the preconditioning;
σ is floored at MIN_STDDEV after every step. Writes a PNG of the component means and the expected
Q against steps, and prints a JSON summary (final means, weights, σ and expected Q per method, and
the first step at which E_π[Q] > −0.1).
"""

import json
import os
from typing import Any, Callable, Dict, NamedTuple

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from matplotlib.figure import Figure
import numpy as np

from runner import plots
from wpo_jax import distributions
from wpo_jax import losses

OPTIMA = (-2.0, 2.0)
PEAK_WIDTH = 0.3
MIN_STDDEV = 1e-3
METHODS = ('wpo', 'likelihood_ratio', 'reparameterisation')
FISHER_DAMPING = 1e-3
# The mixture starts between the peaks, its components slightly apart so they can separate.
INITIAL_MEANS = (-0.1, 0.1)
INITIAL_STDDEV = 0.5
# E_π[Q] above this counts as having reached an optimum (Q ≤ 0, with 0 at the peaks).
NEAR_OPTIMAL_Q = -0.1
# Fixed samples that estimate E_π[Q] for the curves (common random numbers across steps).
EVALUATION_SAMPLES = 4096

Policy = Any  # distributions.MixtureGaussian or distributions.DiagonalGaussian


def bimodal_q(actions: jax.Array) -> jax.Array:
  """Q(a) for actions [..., 1] → [...]: log-sum of two Gaussian bumps at OPTIMA."""
  a = actions[..., 0]
  bumps = jnp.stack([-jnp.square(a - o) / (2 * PEAK_WIDTH**2) for o in OPTIMA], axis=-1)
  return jax.nn.logsumexp(bumps, axis=-1)


def _dq_da(actions: jax.Array) -> jax.Array:
  """Exact ∇aQ, [..., 1]."""
  return jax.grad(lambda a: jnp.sum(bimodal_q(a)))(actions)


def initial_policy(method: str) -> Policy:
  """A 2-component mixture (equal weights, means INITIAL_MEANS) or, for reparameterisation, one
  Gaussian at their midpoint; σ = INITIAL_STDDEV."""
  if method == 'reparameterisation':
    return distributions.DiagonalGaussian(jnp.array([np.mean(INITIAL_MEANS)]),
                                          jnp.array([INITIAL_STDDEV]))
  means = jnp.array(INITIAL_MEANS)[:, None]  # [K, 1]
  return distributions.MixtureGaussian(jnp.zeros(len(INITIAL_MEANS)), means,
                                       jnp.full_like(means, INITIAL_STDDEV))


def wpo_loss(policy: Policy, key: jax.Array, num_samples: int) -> jax.Array:
  """Preconditioned WPO surrogate with exact ∇aQ at N samples of the policy."""
  actions = policy.sample(key, num_samples)  # [N, 1]
  return losses.wpo_surrogate(policy.preconditioned().log_prob, actions, _dq_da(actions))


def wpo_fisher_loss(policy: Policy, key: jax.Array, num_samples: int) -> jax.Array:
  """WPO surrogate through (F̂ + λI)⁻¹, F̂ the Monte-Carlo Fisher of the N samples."""
  actions = policy.sample(key, num_samples)[:, None]  # [N, B=1, 1]
  batched = jax.tree_util.tree_map(lambda x: x[None], policy)  # One state.
  moved = losses.fisher_preconditioned(batched, actions, FISHER_DAMPING)
  return losses.wpo_surrogate(moved.log_prob, actions, _dq_da(actions))


def likelihood_ratio_loss(policy: Policy, key: jax.Array, num_samples: int) -> jax.Array:
  """−mean_i (Q(a_i) − b_i) log π(a_i), b_i the mean Q of the other N−1 samples."""
  actions = jax.lax.stop_gradient(policy.sample(key, num_samples))
  q = bimodal_q(actions)  # [N]
  baseline = (jnp.sum(q) - q) / (num_samples - 1)
  return -jnp.mean((q - baseline) * policy.log_prob(actions))


def reparameterisation_loss(policy: distributions.DiagonalGaussian, key: jax.Array,
                            num_samples: int) -> jax.Array:
  """−mean_i Q(μ + σ ε_i): the pathwise gradient (differentiates through the sample)."""
  return -jnp.mean(bimodal_q(policy.sample(key, num_samples)))


LOSSES: Dict[str, Callable[[Policy, jax.Array, int], jax.Array]] = {
    'wpo': wpo_loss,
    'likelihood_ratio': likelihood_ratio_loss,
    'reparameterisation': reparameterisation_loss,
    'wpo_fisher': wpo_fisher_loss,
}


class Trajectory(NamedTuple):
  """Per step t = 0..T (the initial policy first): the policy's fields and E_π[Q]."""
  policy: Policy  # every field with a leading [T+1] axis
  expected_q: jax.Array  # [T+1]


def expected_q(policy: Policy) -> jax.Array:
  """Monte-Carlo E_π[Q] with EVALUATION_SAMPLES draws from a fixed key."""
  return jnp.mean(bimodal_q(policy.sample(jax.random.PRNGKey(12345), EVALUATION_SAMPLES)))


def train(method: str, num_steps: int, learning_rate: float, num_samples: int,
          seed: int) -> Trajectory:
  """`num_steps` SGD steps of `method` from `initial_policy(method)`."""
  loss_fn = LOSSES[method]

  def step(policy, key):
    grads = jax.grad(loss_fn)(policy, key, num_samples)
    policy = jax.tree_util.tree_map(lambda p, g: p - learning_rate * g, policy, grads)
    policy = policy._replace(stddev=jnp.maximum(policy.stddev, MIN_STDDEV))
    return policy, (policy, expected_q(policy))

  start = initial_policy(method)
  keys = jax.random.split(jax.random.PRNGKey(seed), num_steps)
  _, (policies, values) = jax.jit(lambda p, k: jax.lax.scan(step, p, k))(start, keys)
  prepend = lambda first, rest: jnp.concatenate([first[None], rest])
  return Trajectory(jax.tree_util.tree_map(prepend, start, policies),
                    prepend(expected_q(start), values))


def component_means(trajectory: Trajectory) -> np.ndarray:
  """[T+1, K] means of the (1-D) components; K = 1 for the single Gaussian."""
  mean = np.asarray(trajectory.policy.mean)
  return mean[..., 0] if mean.ndim == 3 else mean


def summary(trajectories: Dict[str, Trajectory]) -> Dict[str, Dict[str, Any]]:
  """Final means, weights, σ and E[Q] per method, and the first step with E[Q] > NEAR_OPTIMAL_Q
  (None if never), as plain Python numbers."""
  result = {}
  for method, trajectory in trajectories.items():
    final = jax.tree_util.tree_map(lambda x: np.asarray(x[-1]), trajectory.policy)
    values = np.asarray(trajectory.expected_q)
    near_optimal = np.flatnonzero(values > NEAR_OPTIMAL_Q)
    weights = (np.asarray(jax.nn.softmax(final.logits))
               if isinstance(final, distributions.MixtureGaussian) else np.ones(1))
    result[method] = {
        'final_means': [round(float(m), 4) for m in component_means(trajectory)[-1]],
        'final_weights': [round(float(w), 4) for w in weights],
        'final_stddevs': [round(float(s), 4) for s in np.ravel(final.stddev)],
        'final_expected_q': round(float(trajectory.expected_q[-1]), 4),
        'initial_expected_q': round(float(trajectory.expected_q[0]), 4),
        'steps_to_near_optimal': int(near_optimal[0]) if near_optimal.size else None,
    }
  return result


def plot(trajectories: Dict[str, Trajectory], png_path: str) -> None:
  """Left: component means against steps (optima dotted); right: E_π[Q] against steps."""
  figure = Figure(figsize=(11, 4.2), dpi=100)
  means_axes, value_axes = figure.subplots(1, 2)
  for index, (method, trajectory) in enumerate(trajectories.items()):
    colour = f'C{index}'
    means = component_means(trajectory)
    steps = np.arange(means.shape[0])
    for k in range(means.shape[1]):
      means_axes.plot(steps, means[:, k], color=colour, label=method if k == 0 else None)
    value_axes.plot(steps, np.asarray(trajectory.expected_q), color=colour, label=method)
  for optimum in OPTIMA:
    means_axes.axhline(optimum, color='grey', linestyle=':', linewidth=1)
  means_axes.set(xlabel='SGD step', ylabel='component mean', title='Component means')
  value_axes.set(xlabel='SGD step', ylabel='E_π[Q]', title='Expected Q', ylim=(-25, 1))
  for axes in (means_axes, value_axes):
    axes.grid(True, alpha=0.3)
    axes.legend(loc='best')
  figure.tight_layout()
  plots.save_figure_atomically(figure, png_path)


def _define_flags() -> None:
  """Command-line flags, defined only when run as a script: importing this module (tests) must
  not claim names such as --seed in absl's global registry, which the launchers also define."""
  flags.DEFINE_string('out', 'toy_mixture.png', 'The PNG file to write (e.g. runs/toy_mixture.png); '
                      'its directory is created.')
  flags.DEFINE_integer('steps', 300, 'SGD steps per method.')
  flags.DEFINE_float('learning_rate', 0.02, 'SGD step size, the same for all.')
  flags.DEFINE_integer('num_samples', 16, 'Action samples per step.')
  flags.DEFINE_integer('seed', 0, 'Random seed.')
  flags.DEFINE_list('methods', list(METHODS),
                    'Methods to run: wpo, likelihood_ratio, reparameterisation, wpo_fisher.')


def main(argv):
  del argv
  options = flags.FLAGS
  unknown = sorted(set(options.methods) - set(LOSSES))
  if unknown:
    raise app.UsageError(f'--methods: unknown {unknown}; valid: {sorted(LOSSES)}.')
  trajectories = {
      method: train(method, options.steps, options.learning_rate, options.num_samples,
                    options.seed)
      for method in options.methods
  }
  plot(trajectories, options.out)
  print(json.dumps({'png': os.path.abspath(options.out), 'steps': options.steps,
                    'learning_rate': options.learning_rate, 'num_samples': options.num_samples,
                    'methods': summary(trajectories)}))


if __name__ == '__main__':
  _define_flags()
  app.run(main)
