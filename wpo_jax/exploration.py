"""Exploration noise that is correlated in time ("coloured"), for behaviour policies.

A Gaussian policy's draws a_t = μ(s_t) + σ(s_t)·ε_t usually take ε_t independent at every step
(white noise). With ε_t a coloured sequence instead — unit variance at every step, power spectrum
∝ f^−β along time — each action keeps the policy's marginal N(μ, σ²), while consecutive actions
are correlated: β = 0 is white, β = 1 pink, β = 2 red (Brownian-like). Correlated pushes move a
system further than independent ones of the same size, which is what tasks with a sparse reward
behind a long manoeuvre need (cartpole:swingup_sparse: see RESULTS.md). Only how actors act
changes; the WPO update does not (its critic is learned off-policy).
"""

import jax
import jax.numpy as jnp


def coloured_noise(key: jax.Array, num_steps: int, shape, exponent: float) -> jax.Array:
  """Gaussian noise [num_steps, *shape], zero mean and unit variance at every step, with power
  spectrum ∝ f^−exponent along the first axis; the trailing dimensions are independent.

  Made in the frequency domain: independent complex Gaussian coefficients scaled by f^(−β/2),
  the zero frequency taking the lowest non-zero frequency's scale (so a sequence may drift off
  zero as a whole, as coloured noise does over a finite window), then an inverse real FFT. The
  variance is normalised in closed form, not per draw, so each step is exactly N(0, 1).

  Args:
    key: PRNG key.
    num_steps: T ≥ 2, the length of the sequence.
    shape: the shape of one step's noise, e.g. (D,).
    exponent: β ≥ 0; 0 gives white noise.
  """
  if num_steps < 2:
    raise ValueError(f'num_steps={num_steps} is invalid: coloured noise needs at least 2 steps.')
  shape = tuple(shape)
  frequencies = jnp.fft.rfftfreq(num_steps)  # [F], 0 … 1/2
  frequencies = frequencies.at[0].set(frequencies[1])
  scale = frequencies ** (-exponent / 2.0)
  real_key, imaginary_key = jax.random.split(key)
  coefficient_shape = scale.shape + shape
  coefficients = (jax.random.normal(real_key, coefficient_shape) +
                  1j * jax.random.normal(imaginary_key, coefficient_shape))
  coefficients = coefficients * scale.reshape(scale.shape + (1,) * len(shape))
  noise = jnp.fft.irfft(coefficients, n=num_steps, axis=0)
  # Each step of irfft is (1/T)·(Re c₀ + 2 Σ Re(c_k e^{iφ}) [+ Re c_{T/2} (−1)^t for even T]);
  # a coefficient of scale s contributes variance s² per real part, so:
  weights = jnp.full(scale.shape, 4.0).at[0].set(1.0)
  if num_steps % 2 == 0:
    weights = weights.at[-1].set(1.0)  # The Nyquist term has no pair.
  variance = jnp.sum(weights * scale**2) / num_steps**2
  return (noise / jnp.sqrt(variance)).astype(jnp.float32)
