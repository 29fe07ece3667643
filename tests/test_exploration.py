"""Coloured exploration noise (wpo_jax/exploration.py) and the draws it drives.

Statistics of many sequences against closed forms: unit variance at every step, the lag-one
autocorrelation that the spectrum implies (computed here independently, in numpy), and the
spectral slope.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wpo_jax import distributions
from wpo_jax import exploration

NUM_STEPS, NUM_DRAWS = 1000, 600


@functools.partial(jax.jit, static_argnums=(1, 2))
def _draws(exponent, num_steps, num_draws):
  keys = jax.random.split(jax.random.PRNGKey(7), num_draws)
  return jax.vmap(lambda k: exploration.coloured_noise(k, num_steps, (2,), exponent))(keys)


def _expected_autocorrelation(exponent, num_steps, lag):
  """ρ(lag) of the construction, from its spectrum alone (Wiener–Khinchin)."""
  frequencies = np.fft.rfftfreq(num_steps)
  frequencies[0] = frequencies[1]
  power = frequencies ** -exponent
  # Conjugate pairs count four times; the zero and Nyquist terms stand alone.
  weights = np.full(power.shape, 4.0)
  weights[0] = 1.0
  if num_steps % 2 == 0:
    weights[-1] = 1.0
  phases = np.cos(2 * np.pi * np.arange(len(power)) * lag / num_steps)
  return float(np.sum(weights * power * phases) / np.sum(weights * power))


@pytest.mark.parametrize('exponent', [0.0, 1.0, 2.0])
@pytest.mark.parametrize('num_steps', [NUM_STEPS, 999])
def test_every_step_is_standard_normal_and_correlated_as_the_spectrum_says(exponent, num_steps):
  noise = np.asarray(_draws(exponent, num_steps, NUM_DRAWS))  # [draws, T, 2]
  assert noise.shape == (NUM_DRAWS, num_steps, 2) and noise.dtype == np.float32
  # Variance over draws at each step: 1 at the first, middle and last step, and on average.
  variance = noise.var(axis=0)  # [T, 2]
  standard_error = np.sqrt(2.0 / NUM_DRAWS)
  for step in (0, num_steps // 2, num_steps - 1):
    assert np.all(np.abs(variance[step] - 1.0) < 4 * standard_error), (step, variance[step])
  assert abs(variance.mean() - 1.0) < 0.05
  assert abs(noise.mean()) < 0.05 * (1 + 4 * exponent)  # Low frequencies dominate the mean.
  for lag in (1, 10):
    measured = np.mean(noise[:, lag:] * noise[:, :-lag])
    expected = _expected_autocorrelation(exponent, num_steps, lag)
    assert measured == pytest.approx(expected, abs=0.03), (lag, measured, expected)
  # The two action dimensions are independent sequences.
  assert abs(np.mean(noise[..., 0] * noise[..., 1])) < 0.05 * (1 + 4 * exponent)


def test_white_noise_is_uncorrelated_and_redder_noise_more_correlated():
  lag_one = [_expected_autocorrelation(b, NUM_STEPS, 1) for b in (0.0, 1.0, 2.0)]
  assert lag_one[0] == pytest.approx(0.0, abs=1e-9)
  assert 0.2 < lag_one[1] < lag_one[2] < 1.0


@pytest.mark.parametrize('exponent', [1.0, 2.0])
def test_power_spectrum_falls_as_a_power_of_frequency(exponent):
  noise = np.asarray(_draws(exponent, NUM_STEPS, NUM_DRAWS))[..., 0]
  power = np.mean(np.abs(np.fft.rfft(noise, axis=1)) ** 2, axis=0)
  frequencies = np.fft.rfftfreq(NUM_STEPS)
  band = slice(5, 400)  # Away from the folded zero frequency and the Nyquist term.
  slope = np.polyfit(np.log(frequencies[band]), np.log(power[band]), 1)[0]
  assert slope == pytest.approx(-exponent, abs=0.1)


def test_too_short_a_sequence_is_refused():
  with pytest.raises(ValueError, match='num_steps=1 is invalid'):
    exploration.coloured_noise(jax.random.PRNGKey(0), 1, (2,), 1.0)


def test_from_noise_is_the_draw_that_sample_makes():
  key = jax.random.PRNGKey(3)
  noise = jax.random.normal(key, (5, 4, 2))
  mean, stddev = jnp.linspace(-2.0, 2.0, 8).reshape(4, 2), jnp.full((4, 2), 0.7)
  gaussian = distributions.DiagonalGaussian(mean, stddev)
  squashed = distributions.TanhGaussian(mean, stddev)
  np.testing.assert_allclose(gaussian.from_noise(noise), mean + stddev * noise, rtol=1e-6)
  np.testing.assert_allclose(squashed.from_noise(noise), jnp.clip(
      jnp.tanh(mean + stddev * noise), -1 + distributions.TANH_EPSILON,
      1 - distributions.TANH_EPSILON), rtol=1e-6)
  # sample(key) is from_noise of that key's standard normals: one way to make a draw.
  np.testing.assert_array_equal(gaussian.sample(key, 5), gaussian.from_noise(noise))
  np.testing.assert_array_equal(squashed.sample(key, 5), squashed.from_noise(noise))
