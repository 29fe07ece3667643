"""MPO as a policy-improvement step for the WPO learner, using the MPO loss shipped in dm-acme.

With it, WPO and MPO share the critic, target networks, optimiser, replay and acting, and differ
only in how the policy is improved: MPO re-weights N actions sampled from the target policy by
exp(Q/η) and fits the online policy to them under decoupled KL constraints (Abdolmaleki et al.,
2018); WPO moves each sampled action along ∇aQ.
"""

import dataclasses

import agents  # noqa: F401  (the hook that lets acme import; see agents/acme_compat.py)
from acme.jax.losses import mpo as acme_mpo
import jax
import jax.numpy as jnp
from tensorflow_probability.substrates import jax as tfp

from wpo_jax import learning

tfd = tfp.distributions


@dataclasses.dataclass(frozen=True)
class MPOSettings:
  """Acme's MPO defaults for the Control Suite (its JAX MPO agent)."""
  epsilon: float = 0.1
  epsilon_mean: float = 0.0025
  epsilon_stddev: float = 1e-6
  init_log_temperature: float = 10.0
  init_log_alpha_mean: float = 10.0
  init_log_alpha_stddev: float = 1000.0
  per_dim_constraining: bool = True
  action_penalization: bool = True


def _independent_normal(policy) -> tfd.Distribution:
  return tfd.Independent(tfd.Normal(policy.mean, policy.stddev), reinterpreted_batch_ndims=1)


def make_mpo_improvement(num_action_samples: int,
                         settings: MPOSettings = MPOSettings()) -> learning.PolicyImprovement:
  """The `learning.PolicyImprovement` that applies `acme.jax.losses.mpo.MPO` (Gaussian policies)."""
  loss_module = acme_mpo.MPO(
      epsilon=settings.epsilon,
      epsilon_mean=settings.epsilon_mean,
      epsilon_stddev=settings.epsilon_stddev,
      init_log_temperature=settings.init_log_temperature,
      init_log_alpha_mean=settings.init_log_alpha_mean,
      init_log_alpha_stddev=settings.init_log_alpha_stddev,
      per_dim_constraining=settings.per_dim_constraining,
      action_penalization=settings.action_penalization)

  def loss(params, policy, target_policy, q_fn, key):
    # Acme's MPO clips its duals after each update; clipping them on the way in is equivalent for
    # the loss and keeps the optimiser's parameters unconstrained.
    params = acme_mpo.clip_mpo_params(params, settings.per_dim_constraining)
    actions = jax.lax.stop_gradient(target_policy.sample(key, num_action_samples))  # [N, B, D]
    q_values = jax.lax.stop_gradient(q_fn(actions))  # [N, B]
    value, stats = loss_module(params, _independent_normal(policy),
                               _independent_normal(target_policy), actions, q_values)
    metrics = {
        'mpo_loss_policy': stats.loss_policy,
        'mpo_temperature': stats.dual_temperature,
        'kl_mean': stats.kl_mean_rel,
        'kl_stddev': stats.kl_stddev_rel,
        'kl_weight_mean': stats.dual_alpha_mean,
        'kl_weight_stddev': stats.dual_alpha_stddev,
        'kl_nonparametric': stats.kl_q_rel,
    }
    # Acme's loss and stats carry the duals' shape ([1] or [D]); the learner logs scalars.
    return jnp.sum(value), {k: jnp.mean(v) for k, v in metrics.items()}

  return learning.PolicyImprovement(init=loss_module.init_params, loss=loss)
