"""The core's public losses reject mismatched shapes at entry (chex), before any arithmetic
could broadcast them into a wrong but finite result."""

import chex
import jax.numpy as jnp
import pytest

from wpo_jax import losses

B, D, N = 4, 2, 3


def _kl(shape=(B, D)):
  return losses.DecoupledKL(jnp.ones(shape), jnp.ones(shape))


@pytest.mark.parametrize('call', [
    # [N, B, D] actions with [B, D] gradients would broadcast silently.
    lambda: losses.wpo_surrogate(lambda a: -jnp.sum(a**2, -1), jnp.ones((N, B, D)),
                                 jnp.ones((B, D))),
    lambda: losses.gaussian_natural_gradient_scaling(jnp.ones((B, D)), jnp.ones((D,))),
    lambda: losses.decoupled_gaussian_kl(jnp.ones((B, D)), jnp.ones((B, D)), jnp.ones((B, D)),
                                         jnp.ones((B, 1))),
    lambda: losses.categorical_kl(jnp.ones((B, 3)), jnp.ones((1, 3))),
    lambda: losses.fixed_kl_penalty(losses.DecoupledKL(jnp.ones((B, D)), jnp.ones((D,))),
                                    1.0, 1.0),
    lambda: losses.lagrangian_kl_penalty(_kl(), jnp.zeros((D + 1,)), jnp.zeros((D,)), 0.1, 0.1),
    lambda: losses.lagrangian_kl_penalty(_kl(), jnp.zeros((1, D)), jnp.zeros((1, D)), 0.1, 0.1),
    # [B, 1] values against [B] rewards would give a [B, B] TD error.
    lambda: losses.expected_sarsa_td_error(jnp.ones((B, 1)), jnp.ones((B,)), jnp.ones((B,)),
                                           jnp.ones((N, B))),
    lambda: losses.expected_sarsa_td_error(jnp.ones((B,)), jnp.ones((B,)), jnp.ones((B,)),
                                           jnp.ones((B, N))),
    lambda: losses.n_step_transition(jnp.ones((3, B)), jnp.ones((3, 1)), 0.9),
])
def test_mismatched_shapes_are_rejected(call):
  with pytest.raises(AssertionError):
    call()


def test_matching_shapes_pass():
  losses.lagrangian_kl_penalty(_kl((N, B, D)), jnp.zeros((D,)), jnp.zeros((D,)), 0.1, 0.1)
  td = losses.expected_sarsa_td_error(jnp.ones((B,)), jnp.ones((B,)), jnp.ones((B,)),
                                      jnp.ones((N, B)))
  chex.assert_shape(td, (B,))
  ret, discount = losses.n_step_transition(jnp.ones((3, B)), jnp.ones((3, B)), 0.9)
  chex.assert_shape([ret, discount], (B,))
