"""The WPO learner's hyperparameters, validated when built (`LearnerConfig`)."""

import dataclasses
from typing import Any, Optional, Tuple

KL_MODES = ('fixed', 'lagrange')
POLICY_LOSS_STATES = ('s', 's_and_next')
DQ_DA_TRANSFORMS = ('none', 'cube_root', 'batch_normalise')
# Options of the WPO policy step only (`wpo_jax.policy_options`), with the defaults that leave
# the paper's update unchanged; another policy improvement (MPO) needs them at these.
WPO_STEP_OPTIONS = {'policy_loss_states': 's', 'dq_da_transform': 'none', 'entropy_weight': 0.0,
                    'mean_box_penalty': 0.0}


def check_field(condition: bool, field: str, allowed: str, value: Any) -> None:
  """Raises ValueError('field=value is invalid: field must be <allowed>.') unless `condition`.

  The one message format of every validated config (LearnerConfig, WPOConfig, CommonSettings);
  command lines turn it into a flag error by prefixing '--' where flag and field share a name.
  """
  if not condition:
    raise ValueError(f'{field}={value!r} is invalid: {field} must be {allowed}.')


@dataclasses.dataclass(frozen=True)
class LearnerConfig:
  """Hyperparameters of the WPO learner step (defaults: the public reference launcher).

  num_action_samples: N, actions per state for the WPO term and the expected-SARSA bootstrap.
  discount: γ; the bootstrap uses γ·D with D from the n-step adder.
  target_update_period: SGD steps between hard copies into the target networks.
  learning_rate: Adam step size for policy, critic and duals.
  max_grad_norm: clip each of the policy, critic and dual gradients to this global norm;
    None disables clipping.
  natural_gradient: precondition the policy; False gives the plain WPO gradient.
  fisher_damping: with natural_gradient, None uses each distribution's closed-form
    preconditioner (`preconditioned()`: σ² / σ²/2 for a Gaussian); a value λ > 0 instead solves
    with the damped Monte-Carlo Fisher (F̂ + λI) of the distribution's own parameters per state,
    estimated from the N sampled actions (`losses.fisher_preconditioned`; small policies only).
  kl_mode: 'fixed' (soft penalty with kl_weight_*) or 'lagrange' (duals with kl_epsilon_*).
  kl_weight_mean, kl_weight_stddev: penalty weights in 'fixed' mode. The reference uses
    softplus(0) and 1e4 against a WPO term summed over its N=20 samples; our surrogate averages
    over the samples (so the balance does not depend on N), hence the reference weights / 20.
  kl_epsilon_mean, kl_epsilon_stddev: per-dimension KL bounds in 'lagrange' mode.
  dual_learning_rate: Adam step size for the dual parameters (Lagrange multipliers, or a
    replacement policy-improvement step's own parameters); Acme's MPO default.
  init_log_dual: initial unconstrained dual value in 'lagrange' mode.
  clip_critic_actions: clip actions to [action_minimum, action_maximum] at the critic input.
    ∇aQ is then zero for sampled actions outside the box, which stops the policy from pushing
    its mean out of the bounds.
  policy_loss_states: 's' takes the WPO term and the KL at the batch's states; 's_and_next' also
    at the bootstrap states s', as the public reference does (twice the policy states per
    batch), leaving out the s' whose discount D is 0 (`policy_states`).
  dq_da_transform: applied to ∇aQ before the WPO term (`transform_dq_da`): 'none'; 'cube_root'
    (the reference's optional sign(g)·|g|^⅓ squash); 'batch_normalise' (∇aQ / its RMS over the
    batch, so the WPO term's scale, and with it its balance against the KL, does not depend on
    the critic's scale).
  entropy_weight: w ≥ 0 adds −w·Σ_d log σ_d (the Gaussian entropy up to a constant, through the
    unpreconditioned σ; `log_scale_entropy`) to the policy loss. A departure from the paper's
    update, which has no entropy term: it pushes σ up by w/σ against the KL's pull; 0 (the
    default) leaves the update the paper's.
  mean_box_penalty: w ≥ 0 adds w·Σ_d (distance of μ_d outside [action_minimum, action_maximum])²
    per state (every component's mean for a mixture; `box_penalty`) to the policy loss, through
    the unpreconditioned means. An alternative to clip_critic_actions (use it with that False):
    the critic then sees the sampled actions as they are, and the penalty, rather than a ∇aQ
    cut to zero outside the box, keeps the means inside. Also a departure from the paper;
    0 (the default) leaves the update the paper's.
  """
  num_action_samples: int = 20
  discount: float = 0.99
  target_update_period: int = 100
  learning_rate: float = 3e-4
  max_grad_norm: Optional[float] = 40.0
  natural_gradient: bool = True
  fisher_damping: Optional[float] = None
  kl_mode: str = 'fixed'
  kl_weight_mean: float = 0.6931471805599453 / 20  # softplus(0) / N_reference
  kl_weight_stddev: float = 1e4 / 20
  dual_learning_rate: float = 1e-2
  kl_epsilon_mean: float = 0.0025
  kl_epsilon_stddev: float = 1e-6
  init_log_dual: float = 0.0
  clip_critic_actions: bool = True
  action_minimum: float = -1.0
  action_maximum: float = 1.0
  policy_loss_states: str = 's'
  dq_da_transform: str = 'none'
  entropy_weight: float = 0.0
  mean_box_penalty: float = 0.0

  def __post_init__(self):
    check_field(self.num_action_samples >= 1, 'num_action_samples', 'an integer >= 1',
                self.num_action_samples)
    check_field(0.0 <= self.discount <= 1.0, 'discount', 'in [0, 1]', self.discount)
    check_field(self.target_update_period >= 1, 'target_update_period', 'an integer >= 1',
                self.target_update_period)
    check_field(self.learning_rate > 0.0, 'learning_rate', '> 0', self.learning_rate)
    check_field(self.dual_learning_rate > 0.0, 'dual_learning_rate', '> 0',
                self.dual_learning_rate)
    check_field(self.max_grad_norm is None or self.max_grad_norm > 0.0, 'max_grad_norm',
                '> 0 or None', self.max_grad_norm)
    check_field(self.fisher_damping is None or self.fisher_damping > 0.0, 'fisher_damping',
                '> 0 or None', self.fisher_damping)
    check_field(self.kl_mode in KL_MODES, 'kl_mode', f'one of {KL_MODES}', self.kl_mode)
    check_field(self.kl_weight_mean >= 0.0, 'kl_weight_mean', '>= 0', self.kl_weight_mean)
    check_field(self.kl_weight_stddev >= 0.0, 'kl_weight_stddev', '>= 0', self.kl_weight_stddev)
    check_field(self.kl_epsilon_mean > 0.0, 'kl_epsilon_mean', '> 0', self.kl_epsilon_mean)
    check_field(self.kl_epsilon_stddev > 0.0, 'kl_epsilon_stddev', '> 0', self.kl_epsilon_stddev)
    check_field(self.action_minimum < self.action_maximum, 'action_minimum',
                f'< action_maximum ({self.action_maximum})', self.action_minimum)
    check_field(self.policy_loss_states in POLICY_LOSS_STATES, 'policy_loss_states',
                f'one of {POLICY_LOSS_STATES}', self.policy_loss_states)
    check_field(self.dq_da_transform in DQ_DA_TRANSFORMS, 'dq_da_transform',
                f'one of {DQ_DA_TRANSFORMS}', self.dq_da_transform)
    check_field(self.entropy_weight >= 0.0, 'entropy_weight', '>= 0', self.entropy_weight)
    check_field(self.mean_box_penalty >= 0.0, 'mean_box_penalty', '>= 0', self.mean_box_penalty)

  def changed_wpo_step_options(self) -> Tuple[str, ...]:
    """The WPO_STEP_OPTIONS that differ from their defaults, in that order."""
    return tuple(name for name, default in WPO_STEP_OPTIONS.items()
                 if getattr(self, name) != default)
