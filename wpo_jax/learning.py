"""The pure-functional WPO learner: TrainingState, one SGD step, and k steps fused with `lax.scan`.

One step, for a batch of (n-step) transitions (s, a, R, D, s'):
  critic:  ½ (R + γ·D·mean_i Q̄(s', a'_i) − Q(s, a))²,   a'_i ~ π̄(·|s'), i = 1..N
  policy:  WPO surrogate at s with a_i ~ π(·|s) and ∇aQ(s, a_i) from the online critic, both held
           constant, through the preconditioned policy; plus the decoupled KL to π̄(·|s).
The policy may be any distribution of `wpo_jax.distributions` (Gaussian, tanh-Gaussian,
Gaussian mixture): each brings its own preconditioner and decoupled KL.
Target networks (π̄, Q̄) are hard copies of the online ones, refreshed every
`target_update_period` steps.
"""

from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from wpo_jax import learner_config
from wpo_jax import losses
from wpo_jax import networks as networks_lib
from wpo_jax import policy_options
from wpo_jax.learner_config import LearnerConfig  # Part of this module's API.

Params = Any
Metrics = Dict[str, jax.Array]


class Transition(NamedTuple):
  """A batch of n-step transitions; field names follow `acme.types.Transition`.

  observation: [B, O]; action: [B, D]; reward: [B] n-step return R; discount: [B] D = γⁿ⁻¹·Π d_k
  (Acme's adder convention: the learner bootstraps with γ·D); next_observation: [B, O].
  """
  observation: jax.Array
  action: jax.Array
  reward: jax.Array
  discount: jax.Array
  next_observation: jax.Array


class WPOParams(NamedTuple):
  policy: Params
  critic: Params


class KLDuals(NamedTuple):
  """Unconstrained Lagrange multipliers, [D] each; weights are softplus(·). Unused in 'fixed'."""
  log_mean: jax.Array
  log_stddev: jax.Array


class TrainingState(NamedTuple):
  params: WPOParams
  target_params: WPOParams
  opt_state: optax.OptState
  dual_params: Params  # KLDuals for WPO; a PolicyImprovement's own parameters otherwise.
  steps: jax.Array  # int32 scalar: SGD steps taken.
  key: jax.Array  # PRNG key; split afresh on every step.


global_norm = optax.tree.norm  # √(Σ x²) over every leaf (optax.global_norm is deprecated).


def _clip_each(max_norm: Optional[float]) -> optax.GradientTransformation:
  """Clips one network's (or the duals') gradients to global norm `max_norm`; None: no clip."""
  return optax.identity() if max_norm is None else optax.clip_by_global_norm(max_norm)


def per_network_clip(max_norm: Optional[float]) -> optax.GradientTransformation:
  """Clips the policy's and the critic's gradients (a `WPOParams`) separately to `max_norm`.

  Stateless, and kept apart from Adam so that `TrainingState.opt_state` (and so the checkpoint
  format) is Adam's state alone.
  """
  clip = _clip_each(max_norm)
  return optax.multi_transform({'policy': clip, 'critic': clip},
                               WPOParams(policy='policy', critic='critic'))


def _stateless_update(transform: optax.GradientTransformation, updates: Params) -> Params:
  return transform.update(updates, transform.init(updates))[0]


class PolicyImprovement(NamedTuple):
  """A policy-improvement step to use instead of WPO's, behind the same critic and optimiser.

  init(action_dim) -> its own trainable parameters (e.g. MPO's duals), kept in
    `TrainingState.dual_params`.
  loss(params, policy, target_policy, q_fn, key) -> (scalar loss, metrics): `policy` and
    `target_policy` are the distributions at the batch's states ([B, D] fields), and
    q_fn(actions [N, B, D]) -> [N, B] scores actions with the online critic, held constant.
  """
  init: Callable[[int], Params]
  loss: Callable[..., Tuple[jax.Array, Metrics]]


class Learner(NamedTuple):
  """Pure functions of one WPO learner (optax style: build once, call anywhere).

  init(key, observation_dim) -> TrainingState
  sgd_step(state, batch: Transition) -> (state, metrics); not jitted, so it can be traced by a
    caller's jit, scan or pmap.
  """
  init: Callable[[jax.Array, int], TrainingState]
  sgd_step: Callable[[TrainingState, Transition], Tuple[TrainingState, Metrics]]


def make_learner(networks: networks_lib.WPONetworks, action_dim: int,
                 config: LearnerConfig = LearnerConfig(),
                 policy_improvement: Optional[PolicyImprovement] = None) -> Learner:
  """Builds the init and SGD-step functions for `networks` acting in a D=`action_dim` box.

  With `policy_improvement` the WPO term and its KL penalty are replaced by that step (e.g. MPO
  for a like-for-like baseline); the critic, targets, optimiser and data are unchanged.
  """
  changed = config.changed_wpo_step_options()
  if policy_improvement is not None and changed:
    raise ValueError(f'{", ".join(changed)}: options of the WPO policy step; leave them at '
                     f'their defaults {learner_config.WPO_STEP_OPTIONS} with another policy '
                     'improvement.')
  optimizer = optax.adam(config.learning_rate)
  dual_optimizer = optax.adam(config.dual_learning_rate)
  network_clip = per_network_clip(config.max_grad_norm)
  dual_clip = _clip_each(config.max_grad_norm)
  num_samples = config.num_action_samples

  def critic_input(actions):
    if config.clip_critic_actions:
      return jnp.clip(actions, config.action_minimum, config.action_maximum)
    return actions

  def q_value(critic_params, observation, actions):
    return networks.critic.apply(critic_params, observation, critic_input(actions))

  def init(key: jax.Array, observation_dim: int) -> TrainingState:
    policy_key, critic_key, state_key = jax.random.split(key, 3)
    observation = jnp.zeros((1, observation_dim), jnp.float32)
    action = jnp.zeros((1, action_dim), jnp.float32)
    params = WPOParams(
        policy=networks.policy.init(policy_key, observation),
        critic=networks.critic.init(critic_key, observation, action))
    if policy_improvement is None:
      dual_params = KLDuals(
          log_mean=jnp.full((action_dim,), config.init_log_dual, jnp.float32),
          log_stddev=jnp.full((action_dim,), config.init_log_dual, jnp.float32))
    else:
      dual_params = policy_improvement.init(action_dim)
    return TrainingState(
        params=params,
        # Distinct buffers, so callers may donate the state to a jitted step.
        target_params=jax.tree_util.tree_map(jnp.copy, params),
        opt_state=(optimizer.init(params), dual_optimizer.init(dual_params)),
        dual_params=dual_params,
        steps=jnp.zeros((), jnp.int32),
        key=state_key)

  def loss_fn(trainable, target_params, batch: Transition, key):
    params, dual_params = trainable
    bootstrap_key, policy_key = jax.random.split(key)

    # Critic: n-step TD with an expected-SARSA bootstrap over N target-policy actions.
    q_tm1 = q_value(params.critic, batch.observation, batch.action)
    next_actions = networks.policy.apply(target_params.policy, batch.next_observation).sample(
        bootstrap_key, num_samples)  # [N, B, D]
    q_t = q_value(target_params.critic, batch.next_observation, next_actions)  # [N, B]
    td_error = losses.expected_sarsa_td_error(q_tm1, batch.reward,
                                              config.discount * batch.discount, q_t)
    critic_loss = 0.5 * jnp.mean(jnp.square(td_error))

    policy = networks.policy.apply(params.policy, batch.observation)
    target_policy = networks.policy.apply(target_params.policy, batch.observation)
    critic_params = jax.lax.stop_gradient(params.critic)
    metrics = {
        'critic_loss': critic_loss,
        'q_mean': jnp.mean(q_tm1),
        'td_error_abs': jnp.mean(jnp.abs(td_error)),
        'policy_stddev_mean': jnp.mean(policy.stddev),
        'policy_stddev_min': jnp.min(policy.stddev),
        'policy_stddev_max': jnp.max(policy.stddev),
    }
    if policy_improvement is not None:
      policy_loss, improvement_metrics = policy_improvement.loss(
          dual_params, policy, target_policy,
          lambda a: q_value(critic_params, batch.observation, a), policy_key)
      return critic_loss + policy_loss, {**metrics, **improvement_metrics}

    # Policy: WPO surrogate with actions and ∇aQ held constant.
    weighted = config.policy_loss_states != 's'
    if weighted:
      # [S, O], [S]
      observation, weight = policy_options.policy_states(batch, config.policy_loss_states)
      policy = networks.policy.apply(params.policy, observation)
      target_policy = networks.policy.apply(target_params.policy, observation)
    else:
      observation = batch.observation
    actions = jax.lax.stop_gradient(policy.sample(policy_key, num_samples))  # [N, S, D]
    dq_da = jax.grad(lambda a: jnp.sum(q_value(critic_params, observation, a)))(actions)
    dq_da_norm = jnp.mean(jnp.linalg.norm(dq_da, axis=-1))  # As the critic gives it.
    if config.dq_da_transform != 'none':
      dq_da = policy_options.transform_dq_da(
          dq_da, weight if weighted else jnp.ones(actions.shape[1]), config.dq_da_transform)
    if weighted:
      # The surrogate and the KL penalties average over states: weighting each state's term is
      # their mean over the states that count (the surrogate is linear in ∇aQ).
      dq_da = dq_da * weight[None, :, None]
    if not config.natural_gradient:
      moved = policy
    elif config.fisher_damping is None:
      moved = policy.preconditioned()
    else:
      moved = losses.fisher_preconditioned(policy, actions, config.fisher_damping)
    wpo_loss = losses.wpo_surrogate(moved.log_prob, actions, dq_da)

    # KL to the target policy, through the unpreconditioned parameters.
    kl = policy.kl_from(target_policy)
    if weighted:
      kl = losses.DecoupledKL(kl.mean * weight[:, None], kl.stddev * weight[:, None])
    if config.kl_mode == 'fixed':
      penalty = losses.fixed_kl_penalty(kl, config.kl_weight_mean, config.kl_weight_stddev)
    else:
      penalty = losses.lagrangian_kl_penalty(kl, dual_params.log_mean, dual_params.log_stddev,
                                             config.kl_epsilon_mean, config.kl_epsilon_stddev)

    metrics.update(
        wpo_loss=wpo_loss,
        kl_penalty=penalty.loss,
        kl_mean=jnp.mean(jnp.sum(kl.mean, axis=-1)),
        kl_stddev=jnp.mean(jnp.sum(kl.stddev, axis=-1)),
        kl_weight_mean=jnp.mean(penalty.weight_mean),
        kl_weight_stddev=jnp.mean(penalty.weight_stddev),
        dq_da_norm=dq_da_norm)
    policy_loss = wpo_loss + penalty.loss
    if config.entropy_weight > 0:
      # Not in the paper's update (see LearnerConfig.entropy_weight).
      entropy = policy_options.log_scale_entropy(policy)
      entropy_loss = -config.entropy_weight * jnp.mean(weight * entropy if weighted else entropy)
      metrics['entropy_loss'] = entropy_loss
      policy_loss = policy_loss + entropy_loss
    if config.mean_box_penalty > 0:
      # Not in the paper's update (see LearnerConfig.mean_box_penalty).
      outside = policy_options.box_penalty(policy, config.action_minimum, config.action_maximum)
      box_loss = config.mean_box_penalty * jnp.mean(weight * outside if weighted else outside)
      metrics['box_loss'] = box_loss
      policy_loss = policy_loss + box_loss
    return critic_loss + policy_loss, metrics

  def sgd_step(state: TrainingState, batch: Transition) -> Tuple[TrainingState, Metrics]:
    key, step_key = jax.random.split(state.key)
    trainable = (state.params, state.dual_params)
    (loss, metrics), (grads, dual_grads) = jax.value_and_grad(loss_fn, has_aux=True)(
        trainable, state.target_params, batch, step_key)

    policy_norm, critic_norm = global_norm(grads.policy), global_norm(grads.critic)
    grads = (_stateless_update(network_clip, grads),
             _stateless_update(dual_clip, dual_grads))

    params_opt_state, dual_opt_state = state.opt_state
    updates, params_opt_state = optimizer.update(grads[0], params_opt_state, state.params)
    dual_updates, dual_opt_state = dual_optimizer.update(grads[1], dual_opt_state,
                                                         state.dual_params)
    params = optax.apply_updates(state.params, updates)
    dual_params = optax.apply_updates(state.dual_params, dual_updates)
    opt_state = (params_opt_state, dual_opt_state)
    steps = state.steps + 1
    target_params = optax.periodic_update(params, state.target_params, steps,
                                          config.target_update_period)

    metrics.update(
        loss=loss,
        policy_grad_norm=policy_norm,
        critic_grad_norm=critic_norm,
        # A non-finite loss or gradient poisons every parameter; report it so the caller can stop
        # and keep its last good state.
        finite=jnp.isfinite(loss) & jnp.isfinite(policy_norm) & jnp.isfinite(critic_norm))
    new_state = TrainingState(params, target_params, opt_state, dual_params, steps, key)
    return new_state, metrics

  return Learner(init=init, sgd_step=sgd_step)


def fuse_sgd_steps(
    sgd_step: Callable[[TrainingState, Transition], Tuple[TrainingState, Metrics]]
) -> Callable[[TrainingState, Transition], Tuple[TrainingState, Metrics]]:
  """k SGD steps in one call: batches carry a leading [k] axis; metrics come back as [k].

  Fusing amortises dispatch and host-device transfers; the result equals k sequential calls.
  """

  def fused(state: TrainingState, batches: Transition) -> Tuple[TrainingState, Metrics]:
    return jax.lax.scan(sgd_step, state, batches)

  return fused

