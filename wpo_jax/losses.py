"""WPO losses: the Wasserstein policy surrogate, preconditioning, KL to the target, critic.

Every function here is pure and shape-polymorphic over leading axes. Shapes in docstrings use
`D` for the action dimension, `N` for action samples per state and `B` for the batch.
"""

from typing import Any, Callable, NamedTuple, Optional, Tuple

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp


def wpo_surrogate(log_prob_fn: Callable[[jax.Array], jax.Array],
                  actions: jax.Array,
                  dq_da: jax.Array) -> jax.Array:
  """Surrogate whose parameter gradient is the (plain) WPO direction.

  For a_i ~ π sampled outside this function, the returned scalar is

      L(θ) = −mean_i Σ_d ∂ log π_θ(a_i)/∂a_d · ∂Q/∂a_d(a_i),

  with a_i and ∇aQ held constant, so ∇θ L = −E[∇θ ∇a log π_θ(a) · ∇aQ(a)]. Nothing about the
  distribution is assumed beyond a log-density that is differentiable in the action: no
  reparameterisation is used.

  Args:
    log_prob_fn: maps actions [..., D] to log-densities [...]; it closes over the policy
      parameters and must evaluate each action independently (log π(a_i) may not depend on a_j).
    actions: [..., D] actions, treated as constants.
    dq_da: [..., D] action-gradients of the critic at `actions`, treated as constants.

  Returns:
    A scalar; minimise it to follow the WPO direction.
  """
  chex.assert_equal_shape([actions, dq_da])
  actions = jax.lax.stop_gradient(actions)
  dq_da = jax.lax.stop_gradient(dq_da)
  log_probs, log_prob_vjp = jax.vjp(log_prob_fn, actions)
  # Because each log π(a_i) depends only on a_i, the vector-Jacobian product with ones is the
  # per-sample score ∇a log π(a_i).
  (score,) = log_prob_vjp(jnp.ones_like(log_probs))
  return -jnp.mean(jnp.sum(score * dq_da, axis=-1))


def scale_gradient(x: jax.Array, scale: jax.Array) -> jax.Array:
  """Identity in the forward pass; multiplies the incoming gradient by `scale` (held constant)."""
  scale = jax.lax.stop_gradient(scale)
  return x * scale + jax.lax.stop_gradient(x * (1.0 - scale))


def gaussian_natural_gradient_scaling(
    mean: jax.Array, stddev: jax.Array,
    weight: Optional[jax.Array] = None) -> Tuple[jax.Array, jax.Array]:
  """Approximate Fisher preconditioning of a diagonal Gaussian's (μ, σ).

  The Fisher matrix of N(μ, σ²) in (μ, σ) is diag(1/σ², 2/σ²), so its inverse rescales the
  gradient flowing through μ by σ² and through σ by σ²/2. Forward values are unchanged.

  A mixture component chosen with probability w carries w times that Fisher in the joint
  (component, action) distribution, so `weight` divides both scales by w.

  Args:
    mean: [..., D].
    stddev: [..., D], positive.
    weight: optional [..., 1] (or broadcastable) positive component weights; None means 1.

  Returns:
    (mean, stddev) with identical values and rescaled backward passes.
  """
  chex.assert_equal_shape([mean, stddev])
  variance = jnp.square(stddev)
  if weight is not None:
    variance = variance / weight
  return scale_gradient(mean, variance), scale_gradient(stddev, 0.5 * variance)


def precondition_gradient(x: jax.Array, matrix: jax.Array) -> jax.Array:
  """Identity in the forward pass; the incoming gradient g of x [..., P] becomes matrix·g.

  The matrix generalisation of `scale_gradient`: x − stop_gradient(x) is zero in the forward
  pass, so the output equals x exactly, and its Jacobian with respect to x is `matrix`ᵀ.

  Args:
    x: [..., P].
    matrix: [..., P, P] symmetric, held constant.
  """
  matrix = jax.lax.stop_gradient(matrix)
  sg_x = jax.lax.stop_gradient(x)
  return sg_x + jnp.einsum('...p,...pq->...q', x - sg_x, matrix)


def monte_carlo_fisher(distribution: Any, actions: jax.Array) -> jax.Array:
  """Monte-Carlo Fisher matrix of one state's policy over its own parameters.

      F̂ = mean_i ∇φ log π_φ(a_i) ∇φ log π_φ(a_i)ᵀ,   a_i ~ π_φ,

  where φ are all leaves of `distribution` flattened in `jax.flatten_util.ravel_pytree` order
  (e.g. (μ, σ) for a diagonal Gaussian: exactly diag(1/σ², 2/σ²) in expectation). No gradient
  flows through F̂.

  Args:
    distribution: a distribution pytree for one state (leaves without batch axes) with
      `log_prob(actions [D]) -> []`.
    actions: [N, D] samples from `distribution`.

  Returns:
    [P, P] with P the number of distribution parameters.
  """
  flat, unravel = jax.flatten_util.ravel_pytree(jax.lax.stop_gradient(distribution))
  score = jax.grad(lambda params, action: unravel(params).log_prob(action))
  scores = jax.vmap(score, in_axes=(None, 0))(flat, jax.lax.stop_gradient(actions))  # [N, P]
  return scores.T @ scores / actions.shape[0]


def fisher_preconditioned(distribution: Any, actions: jax.Array, damping: float) -> Any:
  """The distribution with the gradient of each state's parameters multiplied by (F̂ + λI)⁻¹.

  A sample-based alternative to each distribution's closed-form `preconditioned()`: per state,
  F̂ is `monte_carlo_fisher` from the given actions. Forward values are unchanged. It costs a
  P×P solve per state, so it suits small policies; F̂ has rank ≤ N, so with P > N the damping λ
  alone sets the step in the directions the samples do not cover.

  Args:
    distribution: a distribution pytree whose leaves carry one leading batch axis [B, ...].
    actions: [N, B, D] samples from `distribution`.
    damping: λ > 0, added to the Fisher's diagonal.

  Returns:
    A distribution of the same type and shapes.
  """

  def per_state(state_distribution, state_actions):
    fisher = monte_carlo_fisher(state_distribution, state_actions)
    inverse = jnp.linalg.inv(fisher + damping * jnp.eye(fisher.shape[0], dtype=fisher.dtype))
    flat, unravel = jax.flatten_util.ravel_pytree(state_distribution)
    return unravel(precondition_gradient(flat, inverse))

  return jax.vmap(per_state, in_axes=(0, 1))(distribution, actions)


class DecoupledKL(NamedTuple):
  """Per-dimension KL terms, each [..., D]."""
  mean: jax.Array
  stddev: jax.Array


def decoupled_gaussian_kl(target_mean: jax.Array, target_stddev: jax.Array,
                          online_mean: jax.Array, online_stddev: jax.Array) -> DecoupledKL:
  """MPO-style decoupled KL(target ‖ online) of diagonal Gaussians, per action dimension.

  The mean part moves only μ (both sides use the target σ̄); the std part moves only σ (both
  sides use the target μ̄):
      KL_μ = KL(N(μ̄, σ̄) ‖ N(μ, σ̄)) = (μ − μ̄)² / (2σ̄²)
      KL_σ = KL(N(μ̄, σ̄) ‖ N(μ̄, σ)) = log(σ/σ̄) + σ̄²/(2σ²) − ½

  Args:
    target_mean, target_stddev, online_mean, online_stddev: [..., D].

  Returns:
    DecoupledKL with `mean` and `stddev` fields of shape [..., D].
  """
  chex.assert_equal_shape([target_mean, target_stddev, online_mean, online_stddev])
  target_mean = jax.lax.stop_gradient(target_mean)
  target_stddev = jax.lax.stop_gradient(target_stddev)
  kl_mean = jnp.square(online_mean - target_mean) / (2.0 * jnp.square(target_stddev))
  variance_ratio = jnp.square(target_stddev / online_stddev)
  kl_stddev = 0.5 * (variance_ratio - 1.0 - jnp.log(variance_ratio))
  return DecoupledKL(mean=kl_mean, stddev=kl_stddev)


def categorical_kl(target_logits: jax.Array, online_logits: jax.Array) -> jax.Array:
  """KL(Cat(softmax(target_logits)) ‖ Cat(softmax(online_logits))) over the last axis.

  Args:
    target_logits, online_logits: [..., K]; the target side is held constant.

  Returns:
    [...] non-negative KL values.
  """
  chex.assert_equal_shape([target_logits, online_logits])
  target_log_weights = jax.nn.log_softmax(jax.lax.stop_gradient(target_logits), axis=-1)
  online_log_weights = jax.nn.log_softmax(online_logits, axis=-1)
  return jnp.sum(jnp.exp(target_log_weights) * (target_log_weights - online_log_weights),
                 axis=-1)


class KLPenalty(NamedTuple):
  """Output of `kl_penalty`: the loss to add and the weights that were used, each scalar or [D]."""
  loss: jax.Array
  weight_mean: jax.Array
  weight_stddev: jax.Array


def fixed_kl_penalty(kl: DecoupledKL, weight_mean: float, weight_stddev: float) -> KLPenalty:
  """Soft penalty α_μ·KL_μ + α_σ·KL_σ with constant weights, summed over D, averaged over the rest.

  Args:
    kl: DecoupledKL with fields [..., D].
    weight_mean, weight_stddev: non-negative scalars.
  """
  chex.assert_equal_shape([kl.mean, kl.stddev])
  loss = (weight_mean * jnp.mean(jnp.sum(kl.mean, axis=-1)) +
          weight_stddev * jnp.mean(jnp.sum(kl.stddev, axis=-1)))
  return KLPenalty(loss, jnp.asarray(weight_mean), jnp.asarray(weight_stddev))


def dual_weight(log_dual: jax.Array) -> jax.Array:
  """Positive Lagrange multiplier from an unconstrained parameter (softplus, floored at 1e-8)."""
  return jax.nn.softplus(log_dual) + 1e-8


def lagrangian_kl_penalty(kl: DecoupledKL, log_dual_mean: jax.Array, log_dual_stddev: jax.Array,
                          epsilon_mean: float, epsilon_stddev: float) -> KLPenalty:
  """Constraint KL_μ ≤ ε_μ, KL_σ ≤ ε_σ per action dimension, enforced with Lagrange duals.

  The policy sees α·KL with α held constant; the duals see α·(ε − KL) with KL held constant,
  so minimising the sum raises α while the constraint is violated and lowers it otherwise.

  Args:
    kl: DecoupledKL with fields [..., D].
    log_dual_mean, log_dual_stddev: [D] unconstrained dual parameters.
    epsilon_mean, epsilon_stddev: positive scalars.
  """
  chex.assert_equal_shape([kl.mean, kl.stddev])
  chex.assert_shape([log_dual_mean, log_dual_stddev], kl.mean.shape[-1:])
  leading_axes = tuple(range(kl.mean.ndim - 1))
  kl_mean = jnp.mean(kl.mean, axis=leading_axes)  # [D]
  kl_stddev = jnp.mean(kl.stddev, axis=leading_axes)  # [D]
  alpha_mean = dual_weight(log_dual_mean)
  alpha_stddev = dual_weight(log_dual_stddev)
  sg = jax.lax.stop_gradient
  policy_loss = jnp.sum(sg(alpha_mean) * kl_mean) + jnp.sum(sg(alpha_stddev) * kl_stddev)
  dual_loss = (jnp.sum(alpha_mean * (epsilon_mean - sg(kl_mean))) +
               jnp.sum(alpha_stddev * (epsilon_stddev - sg(kl_stddev))))
  return KLPenalty(policy_loss + dual_loss, alpha_mean, alpha_stddev)


def expected_sarsa_td_error(q_tm1: jax.Array, reward_t: jax.Array, discount_t: jax.Array,
                            q_t_samples: jax.Array) -> jax.Array:
  """TD error against an expected-SARSA bootstrap averaged over sampled next actions.

  target = r_t + discount_t · mean_i Q̄(s_t, a_i), a_i ~ π̄(s_t), with the target held constant.
  For an n-step transition `reward_t` is the discounted n-step return and `discount_t` the
  full bootstrap factor γⁿ·Π d_k, i.e. γ times the D of `n_step_transition`.

  Args:
    q_tm1: [B] online critic values Q(s_{t-n}, a_{t-n}).
    reward_t: [B] (n-step) rewards.
    discount_t: [B] bootstrap discounts.
    q_t_samples: [N, B] target-critic values at N target-policy actions in the bootstrap state.

  Returns:
    [B] TD errors target − q_tm1.
  """
  chex.assert_rank([q_tm1, reward_t, discount_t, q_t_samples], [1, 1, 1, 2])
  chex.assert_equal_shape([q_tm1, reward_t, discount_t, q_t_samples[0]])
  bootstrap = jnp.mean(q_t_samples, axis=0)
  target = jax.lax.stop_gradient(reward_t + discount_t * bootstrap)
  return target - q_tm1


def n_step_transition(rewards: jax.Array, discounts: jax.Array,
                      gamma: float) -> Tuple[jax.Array, jax.Array]:
  """Collapses an n-step window into one transition's (return, discount), as Acme's adder does.

  With environment discounts d_k (0 at a terminal) the window [r_0 … r_{n-1}] gives
      R = r_0 + γ d_0 r_1 + γ² d_0 d_1 r_2 + …,   D = γⁿ⁻¹ d_0 d_1 ⋯ d_{n-1},
  so a terminal inside the window stops both the later rewards and the bootstrap. Following
  Acme's `NStepTransitionAdder`, D holds one factor of γ fewer than the bootstrap needs: the
  learner bootstraps with γ·D. A window shorter than n (episode start or end) is passed as is.

  Args:
    rewards: [n, ...] rewards r_k received after the k-th action of the window.
    discounts: [n, ...] environment discounts d_k that came with r_k.
    gamma: the agent's discount γ.

  Returns:
    (R, D), each with the trailing shape [...].
  """
  chex.assert_equal_shape([rewards, discounts])
  step_discounts = gamma * discounts  # γ d_k
  # Discount applied to r_k: Π_{j<k} γ d_j.
  reward_discounts = jnp.cumprod(
      jnp.concatenate([jnp.ones_like(step_discounts[:1]), step_discounts[:-1]]), axis=0)
  ret = jnp.sum(reward_discounts * rewards, axis=0)
  return ret, reward_discounts[-1] * discounts[-1]
