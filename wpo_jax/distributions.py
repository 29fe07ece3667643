"""Policy distributions as pytrees: sample, log_prob, mode, WPO preconditioning and KL to a target.

A distribution is a NamedTuple of arrays, so it can cross `jit`, `vmap` and `scan` boundaries.
Every class offers:
  sample(key, num_samples) -> [num_samples, ..., D] actions (no reparameterisation needed by WPO),
  from_noise(noise [..., D]) -> the draw for given standard-normal noise (Gaussian and
    tanh-Gaussian only: a mixture also draws a component), for actors with coloured noise,
  log_prob(actions [..., D]) -> [...], evaluated independently per action,
  mode() -> [..., D], the action used for evaluation,
  preconditioned() -> the same distribution with rescaled gradients (approximate F⁻¹),
  kl_from(target) -> losses.DecoupledKL of KL(target ‖ self), split into a location part (moved
    by the means and weights) and a scale part (moved by the standard deviations), each [..., D],
    for `losses.fixed_kl_penalty` and `losses.lagrangian_kl_penalty`.
Each also has a `stddev` field (per component, or before squashing) that the learner reports.

WPO only needs ∇a log π(a), so any of these works with `losses.wpo_surrogate` as it is; what
changes per distribution is the preconditioner and the KL.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from wpo_jax import losses

_HALF_LOG_TWO_PI = 0.5 * jnp.log(2.0 * jnp.pi)

# Tanh-squashed actions are kept within [−1 + ε, 1 − ε]: atanh and log(1 − a²) stay finite in
# float32 (1 − 1e-6 is representable), and |atanh(a)| ≤ 7.25.
TANH_EPSILON = 1e-6

# Mixture preconditioning divides by each component's weight w (see MixtureGaussian); the
# weight is floored here so that a nearly dropped component, whose few samples would be
# amplified by 1/w, moves at most 1/MIN_PRECONDITIONING_WEIGHT times faster than its plain
# gradient. It acts as damping of the Fisher, like λ in `losses.fisher_preconditioned`.
MIN_PRECONDITIONING_WEIGHT = 1e-2


class DiagonalGaussian(NamedTuple):
  """N(mean, diag(stddev²)); both fields [..., D]."""
  mean: jax.Array
  stddev: jax.Array

  def sample(self, key: jax.Array, num_samples: int) -> jax.Array:
    """[num_samples, ..., D] draws."""
    return self.from_noise(
        jax.random.normal(key, (num_samples,) + self.mean.shape, self.mean.dtype))

  def from_noise(self, noise: jax.Array) -> jax.Array:
    """The draw for standard-normal `noise` [..., D] (broadcast against the batch shape)."""
    return self.mean + self.stddev * noise

  def log_prob(self, actions: jax.Array) -> jax.Array:
    """[...] log-densities of actions [..., D] (broadcast against the batch shape)."""
    z = (actions - self.mean) / self.stddev
    return jnp.sum(-0.5 * jnp.square(z) - jnp.log(self.stddev) - _HALF_LOG_TWO_PI, axis=-1)

  def mode(self) -> jax.Array:
    return self.mean

  def preconditioned(self) -> 'DiagonalGaussian':
    """Gradients through μ scaled by σ², through σ by σ²/2 (inverse Gaussian Fisher)."""
    return DiagonalGaussian(*losses.gaussian_natural_gradient_scaling(self.mean, self.stddev))

  def kl_from(self, target: 'DiagonalGaussian') -> losses.DecoupledKL:
    """Closed-form decoupled KL(target ‖ self) (`losses.decoupled_gaussian_kl`), [..., D]."""
    return losses.decoupled_gaussian_kl(target.mean, target.stddev, self.mean, self.stddev)


class TanhGaussian(NamedTuple):
  """a = tanh(u), u ~ N(mean, diag(stddev²)); fields [..., D] parameterise u.

  Change of variables: log π(a) = log N(atanh(a); μ, σ) − Σ_d log(1 − a_d²). Samples and the
  actions given to `log_prob` are clipped to [−1 + ε, 1 − ε] (ε = TANH_EPSILON), so a saturated
  tanh never yields a = ±1.

  Under WPO an action moves along ∇aQ, i.e. u moves along ∇aQ / (1 − a²): near the bounds a small
  move of a needs a large move of u. (The reparameterisation gradient has the reciprocal factor
  (1 − a²) instead.)
  """
  mean: jax.Array
  stddev: jax.Array

  def _pre_squash(self) -> DiagonalGaussian:
    return DiagonalGaussian(self.mean, self.stddev)

  def sample(self, key: jax.Array, num_samples: int) -> jax.Array:
    """[num_samples, ..., D] draws inside (−1, 1)."""
    return self.from_noise(
        jax.random.normal(key, (num_samples,) + self.mean.shape, self.mean.dtype))

  def from_noise(self, noise: jax.Array) -> jax.Array:
    """The draw inside (−1, 1) for standard-normal `noise` [..., D] (of the pre-squash u)."""
    actions = jnp.tanh(self._pre_squash().from_noise(noise))
    return jnp.clip(actions, -1.0 + TANH_EPSILON, 1.0 - TANH_EPSILON)

  def log_prob(self, actions: jax.Array) -> jax.Array:
    """[...] log-densities of actions [..., D] in (−1, 1), including the log-Jacobian."""
    bound = 1.0 - TANH_EPSILON
    # Clipped with `where`, not jnp.clip: at a sample that `sample` placed exactly on the bound,
    # jnp.clip would pass only half of ∇a through, and the WPO score needs all of it.
    actions = jnp.where(actions > bound, bound, jnp.where(actions < -bound, -bound, actions))
    log_jacobian = jnp.sum(jnp.log1p(-jnp.square(actions)), axis=-1)
    return self._pre_squash().log_prob(jnp.arctanh(actions)) - log_jacobian

  def mode(self) -> jax.Array:
    """tanh(μ): the median of every action dimension (the density's mode can sit elsewhere)."""
    return jnp.tanh(self.mean)

  def preconditioned(self) -> 'TanhGaussian':
    """The Gaussian's (σ², σ²/2) scaling on (μ, σ).

    Exact, not an approximation: the Fisher information of (μ, σ) is invariant under the
    bijection a = tanh(u), so it equals the Gaussian's diag(1/σ², 2/σ²).
    """
    return TanhGaussian(*losses.gaussian_natural_gradient_scaling(self.mean, self.stddev))

  def kl_from(self, target: 'TanhGaussian') -> losses.DecoupledKL:
    """Decoupled KL(target ‖ self): the pre-squash Gaussian KL, since KL is invariant under tanh."""
    return self._pre_squash().kl_from(target._pre_squash())  # pylint: disable=protected-access


# Fixed-point steps of MixtureGaussian.mode: a few suffice for separated components; overlapping
# ones converge geometrically.
MODE_ITERATIONS = 50


class MixtureGaussian(NamedTuple):
  """Σ_k w_k N(mean_k, diag(stddev_k²)), w = softmax(logits).

  Fields: logits [..., K]; mean and stddev [..., K, D].

  Preconditioning uses the Fisher of the joint distribution of (component k, action a), which
  is block-diagonal: the categorical Fisher diag(w) − wwᵀ for the logits and w_k·diag(1/σ_k²,
  2/σ_k²) for component k's (μ_k, σ_k). It bounds the mixture's own Fisher from above and equals
  it when the components do not overlap. Its inverse
    * scales component k's μ_k and σ_k gradients by σ_k²/w_k and σ_k²/(2w_k): a separated
      component then moves by E_{a~k}[∇aQ] like a lone Gaussian (the Wasserstein flow of its
      own samples), whatever its weight; without 1/w_k a light component would move w_k times
      slower. Weights are floored at MIN_PRECONDITIONING_WEIGHT.
    * maps the logits gradient g (which sums to zero, softmax being shift-invariant) to
      (I − 11ᵀ/K)(g/w), the minimum-norm solution of (diag(w) − wwᵀ)x = g.
  """
  logits: jax.Array
  mean: jax.Array
  stddev: jax.Array

  def _components(self) -> DiagonalGaussian:
    return DiagonalGaussian(self.mean, self.stddev)

  def sample(self, key: jax.Array, num_samples: int) -> jax.Array:
    """[num_samples, ..., D] draws: a component k ~ Cat(w), then a ~ N(μ_k, σ_k²)."""
    component_key, noise_key = jax.random.split(key)
    num_components = self.logits.shape[-1]
    batch_shape = self.logits.shape[:-1]
    components = jax.random.categorical(component_key, self.logits,
                                        shape=(num_samples,) + batch_shape)  # [N, ...]
    one_hot = jax.nn.one_hot(components, num_components, dtype=self.mean.dtype)[..., None]
    selected = DiagonalGaussian(jnp.sum(one_hot * self.mean, axis=-2),
                                jnp.sum(one_hot * self.stddev, axis=-2))  # [N, ..., D]
    noise = jax.random.normal(noise_key, selected.mean.shape, self.mean.dtype)
    return selected.mean + selected.stddev * noise

  def log_prob(self, actions: jax.Array) -> jax.Array:
    """[...] log Σ_k w_k N(a; μ_k, σ_k²) of actions [..., D]."""
    component_log_probs = self._components().log_prob(actions[..., None, :])  # [..., K]
    return jax.nn.logsumexp(jax.nn.log_softmax(self.logits, axis=-1) + component_log_probs,
                            axis=-1)

  def mode(self) -> jax.Array:
    """The highest-density action found by climbing p from every component mean, [..., D].

    At a stationary point of p(a) = Σ_k w_k N(a; μ_k, σ_k²), ∇a p = 0 reads, per dimension d,
        a_d = Σ_k r_k(a) μ_kd / σ_kd²  /  Σ_k r_k(a) / σ_kd²,   r_k(a) ∝ w_k N(a; μ_k, σ_k²),
    and iterating that map from each μ_k climbs to a nearby mode (mean shift for Gaussian
    mixtures). The answer is the candidate, start or end point, of highest density. Separated
    components give (about) the densest component's mean; overlapping ones the shared mode
    between them, which is the point to act on: the mean of a heavier component may sit where
    the density is lower.
    """
    starts = jnp.moveaxis(self.mean, -2, 0)  # [K, ..., D]
    log_weights = jax.nn.log_softmax(self.logits, axis=-1)  # [..., K]
    precision = 1.0 / jnp.square(self.stddev)  # [..., K, D]

    def climb(actions, _):  # [K, ..., D]
      log_joint = log_weights + self._components().log_prob(actions[..., None, :])  # [K, ..., K]
      responsibility = jax.nn.softmax(log_joint, axis=-1)[..., None]  # [K, ..., K, 1]
      weighted_precision = responsibility * precision
      return (jnp.sum(weighted_precision * self.mean, axis=-2) /
              jnp.sum(weighted_precision, axis=-2)), None

    ends, _ = jax.lax.scan(climb, starts, None, length=MODE_ITERATIONS)
    candidates = jnp.concatenate([starts, ends], axis=0)  # [2K, ..., D]
    best = jnp.argmax(self.log_prob(candidates), axis=0)  # [...]
    return jnp.take_along_axis(candidates, best[None, ..., None], axis=0)[0]

  def weights(self) -> jax.Array:
    """[..., K] component probabilities."""
    return jax.nn.softmax(self.logits, axis=-1)

  def preconditioned(self) -> 'MixtureGaussian':
    """Inverse joint Fisher, as in the class docstring; log-densities are unchanged (the logits
    come back centred, which softmax ignores)."""
    weights = jnp.maximum(self.weights(), MIN_PRECONDITIONING_WEIGHT)  # [..., K]
    # Centring first keeps the forward rounding of scale_gradient (|logits|/w) small.
    centred = self.logits - jnp.mean(self.logits, axis=-1, keepdims=True)
    logits = losses.scale_gradient(centred, 1.0 / weights)
    mean, stddev = losses.gaussian_natural_gradient_scaling(self.mean, self.stddev,
                                                            weights[..., None])
    return MixtureGaussian(logits, mean, stddev)

  def kl_from(self, target: 'MixtureGaussian') -> losses.DecoupledKL:
    """Decoupled bound on KL(target ‖ self), [..., D] per part.

    The KL between mixtures has no closed form; the KL between the joint (component, action)
    distributions does, and bounds it from above (chain rule; marginalising cannot increase KL):
        KL(π̄ ‖ π) ≤ KL(w̄ ‖ w) + Σ_k w̄_k KL(N̄_k ‖ N_k).
    Each component KL is decoupled like the Gaussian's; the categorical KL moves probability
    mass, so it joins the location part, spread evenly over the D dimensions:
        mean_d   = Σ_k w̄_k (μ_kd − μ̄_kd)² / (2σ̄_kd²) + KL(w̄ ‖ w) / D
        stddev_d = Σ_k w̄_k KL(N(μ̄_kd, σ̄_kd) ‖ N(μ̄_kd, σ_kd))
    With K = 1 this is exactly the Gaussian's decoupled KL.
    """
    # pylint: disable-next=protected-access
    per_component = self._components().kl_from(target._components())  # [..., K, D]
    target_weights = jax.lax.stop_gradient(target.weights())[..., None]  # [..., K, 1]
    categorical = losses.categorical_kl(target.logits, self.logits)[..., None]  # [..., 1]
    action_dim = self.mean.shape[-1]
    return losses.DecoupledKL(
        mean=jnp.sum(target_weights * per_component.mean, axis=-2) + categorical / action_dim,
        stddev=jnp.sum(target_weights * per_component.stddev, axis=-2))
