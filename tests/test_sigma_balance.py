"""experiments/sigma_balance.py: the σ forces it reports, against closed forms."""

import types

import jax
import jax.numpy as jnp
import numpy as np

from agents import wpo
from experiments import sigma_balance
from wpo_jax import distributions
from wpo_jax import learning

OPTIMUM = jnp.array([0.3, -0.2])


def _networks():
  """A policy that reads (μ, σ) from its parameters and the critic Q = −½‖a − a*‖²."""
  policy = types.SimpleNamespace(apply=lambda params, observation: distributions.DiagonalGaussian(
      jnp.broadcast_to(params['mean'], observation.shape[:1] + (2,)),
      jnp.broadcast_to(params['stddev'], observation.shape[:1] + (2,))))
  critic = types.SimpleNamespace(
      apply=lambda params, observation, a: -0.5 * jnp.sum(jnp.square(a - OPTIMUM), axis=-1))
  return types.SimpleNamespace(policy=policy, critic=critic)


def test_forces_match_the_quadratic_critic_closed_forms():
  # For Q = −½‖a − a*‖² the preconditioned WPO gradient is (μ − a*) for μ and σ for σ (the
  # expected update is Δμ = a* − μ, Δσ = −σ); raw, the σ one is σ/(σ²/2) = 2/σ.
  sigma, sigma_bar = jnp.array([0.5, 0.2]), jnp.array([0.49, 0.21])
  mean = jnp.array([0.0, 0.1])
  params = {'mean': mean, 'stddev': sigma}
  state = types.SimpleNamespace(
      params=learning.WPOParams(params, None),
      target_params=learning.WPOParams({'mean': mean, 'stddev': sigma_bar}, None))
  config = wpo.make_config('cpu', num_action_samples=200_000, clip_critic_actions=False)
  batch = learning.Transition(jnp.zeros((1, 3)), None, None, None, None)
  forces = sigma_balance.forces(_networks(), config, state, batch, jax.random.PRNGKey(0))
  np.testing.assert_allclose(forces['wpo_sigma'][0], sigma, rtol=0.02)
  np.testing.assert_allclose(forces['wpo_raw_sigma'][0], 2 / sigma, rtol=0.02)
  np.testing.assert_allclose(forces['wpo_mu'][0], mean - OPTIMUM, atol=0.005)
  alpha = config.kl_weight_stddev
  np.testing.assert_allclose(forces['kl_sigma_now'][0],
                             alpha * (1 / sigma - sigma_bar ** 2 / sigma ** 3), rtol=1e-5)
  # δ* = |force| σ̄² / (2α): where the KL's slope 2α/σ̄² cancels the WPO force.
  np.testing.assert_allclose(forces['delta_star_sigma'][0] * forces['kl_sigma_slope'][0],
                             np.abs(forces['wpo_sigma'][0]), rtol=1e-5)
