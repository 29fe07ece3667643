"""Why σ does not move: WPO's σ force against the σ-KL's, measured at a checkpointed learner.

(The run below pins the reference's σ-KL weight, 500, which the `cpu` preset used until issue 11's
study chose 5.)

  python -m experiments.run_wpo --preset=cpu --env=cartpole:swingup --num_steps=12000 \\
      --config=kl_weight_stddev=500 --eval_every=6000 --eval_episodes=1 --video=false \\
      --workdir=/tmp/sigma_run
  python -m experiments.sigma_balance --workdir=/tmp/sigma_run --out=/tmp/sigma_out

Loads the run's last checkpoint (learner state) and its replay (read only: nothing is written
to the run), then, on `--num_batches` replay batches:

1. Forces on σ, per action dimension and state, as the gradient of each term of the policy loss
   with respect to the distribution's σ (the loss averages over the batch; figures are per
   state, i.e. × B):
     wpo_raw   ∂/∂σ of the plain WPO surrogate,
     wpo       the same after the σ²/2 preconditioning (what the update uses),
     kl_now    α_σ·∂KL_σ/∂σ at the checkpoint's σ and σ̄ (= α_σ(1/σ − σ̄²/σ³)),
     kl_slope  α_σ·2/σ̄², the KL force per unit |σ − σ̄| near σ̄;
   and the equilibrium offset δ* = |wpo|/kl_slope at which the two cancel. σ can move by at most
   about δ* per target refresh (every `target_update_period` steps σ̄ ← σ), so δ* × refreshes
   bounds its drift over a run. The mean channel's figures come alongside.
2. Drift in one refresh period: from the checkpoint, with σ̄ = σ, `target_update_period` − 1 SGD
   steps on replay batches for each learner variant (σ-KL weights, Lagrange ε_σ,
   batch-normalised ∇aQ, an entropy term, the tanh-Gaussian head on the same parameters),
   reporting mean |σ − σ̄| and mean σ at the end.
3. Exploration: the fraction of actions at the box bounds for a clipped Gaussian N(0, s) and
   near them for tanh(N(0, s)) (closed form and Monte Carlo); in the replay, the fraction of
   stored actions on the bounds; at the replay's states, where the checkpoint's policy means lie
   and which share of its samples the box clips. (Gaussian heads: the policy's `mean`.)

Prints one JSON object (also written to <out>/sigma_balance.json) and <out>/sigma_drift.png.
"""

from agents import reverb_bind  # pylint: disable=g-bad-import-order
if __name__ == '__main__':
  reverb_bind.ensure_preloaded()  # Reverb on loopback only; before anything heavy is imported.
  from runner import process  # pylint: disable=g-import-not-at-top
  process.prepare()  # MUJOCO_GL and dm-acme's patches, before dm_control and acme are used.

import dataclasses  # pylint: disable=g-import-not-at-top,wrong-import-position
import json
import math
import os
import sys
from typing import Any, Dict, List

from absl import app
from absl import flags
from acme import specs
import jax
import jax.numpy as jnp
import numpy as np
import reverb

from agents import atomic_files
from agents import checkpointing
from agents import environments
from agents import methods
from agents import wpo
from runner import plots
from runner import workdir as workdir_lib
from wpo_jax import distributions
from wpo_jax import learning
from wpo_jax import losses

# Learner variants for the drift measurement: name -> LearnerConfig overrides.
VARIANTS = {
    'default (α_σ=500)': {},
    'α_σ=50': {'kl_weight_stddev': 50.0},
    'α_σ=5': {'kl_weight_stddev': 5.0},
    'α_σ=0.5': {'kl_weight_stddev': 0.5},
    'α_σ=0 (free)': {'kl_weight_stddev': 0.0},
    'lagrange ε_σ=1e-3': {'kl_mode': 'lagrange', 'kl_epsilon_stddev': 1e-3},
    'batch_normalise': {'dq_da_transform': 'batch_normalise'},
    'batch_normalise, α_σ=5': {'dq_da_transform': 'batch_normalise', 'kl_weight_stddev': 5.0},
    'entropy w=1': {'entropy_weight': 1.0},
}
TANH_VARIANTS = {
    'tanh head (α_σ=500)': {},
    'tanh head, α_σ=5': {'kl_weight_stddev': 5.0},
    'tanh head, α_σ=0 (free)': {'kl_weight_stddev': 0.0},
}


def load_run(workdir: str):
  """(config, spec, restored TrainingState) of a run_wpo workdir."""
  settings = workdir_lib.read_settings(workdir)  # Today's schema, whichever launcher wrote it.
  if settings is None or not settings.get('wpo_config'):
    raise ValueError(f'{workdir} holds no WPO run (no run.json with a wpo_config).')
  config = wpo.WPOConfig(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in settings['wpo_config'].items()})
  spec = specs.make_environment_spec(environments.make_environment(settings['task'], 0))
  return settings, config, spec


def _stats(x: np.ndarray) -> Dict[str, List[float]]:
  """Per action dimension (last axis): mean |x|, |mean x| (the coherent part) and RMS."""
  x = np.asarray(x).reshape(-1, x.shape[-1])
  return {'mean_abs': np.mean(np.abs(x), 0).tolist(), 'abs_mean': np.abs(np.mean(x, 0)).tolist(),
          'rms': np.sqrt(np.mean(np.square(x), 0)).tolist()}


def forces(nets, config: wpo.WPOConfig, state, batch, key) -> Dict[str, np.ndarray]:
  """Per-state forces on (μ, σ) of each policy-loss term, [B, D] each (see module docstring)."""
  policy = nets.policy.apply(state.params.policy, batch.observation)
  target = nets.policy.apply(state.target_params.policy, batch.observation)
  num_states = batch.observation.shape[0]
  actions = policy.sample(key, config.num_action_samples)
  critic_input = lambda a: jnp.clip(a, config.action_minimum, config.action_maximum) \
      if config.clip_critic_actions else a
  dq_da = jax.grad(lambda a: jnp.sum(nets.critic.apply(state.params.critic, batch.observation,
                                                        critic_input(a))))(actions)

  def surrogate(mean, stddev, precondition):
    gaussian = distributions.DiagonalGaussian(mean, stddev)
    moved = gaussian.preconditioned() if precondition else gaussian
    return losses.wpo_surrogate(moved.log_prob, actions, dq_da) * num_states

  raw_mu, raw_sigma = jax.grad(surrogate, argnums=(0, 1))(policy.mean, policy.stddev, False)
  pre_mu, pre_sigma = jax.grad(surrogate, argnums=(0, 1))(policy.mean, policy.stddev, True)
  sigma, sigma_bar = policy.stddev, target.stddev
  alpha_sigma, alpha_mu = config.kl_weight_stddev, config.kl_weight_mean
  return {
      'sigma': sigma, 'sigma_bar': sigma_bar, 'mu': policy.mean,
      'sigma_minus_target': sigma - sigma_bar,
      'dq_da': jnp.mean(jnp.abs(dq_da), axis=0),
      'wpo_raw_sigma': raw_sigma, 'wpo_sigma': pre_sigma,
      'kl_sigma_now': alpha_sigma * (1 / sigma - sigma_bar ** 2 / sigma ** 3),
      'kl_sigma_slope': alpha_sigma * 2 / sigma_bar ** 2 * jnp.ones_like(sigma),
      'delta_star_sigma': jnp.abs(pre_sigma) * sigma_bar ** 2 / (2 * max(alpha_sigma, 1e-30)),
      'wpo_mu': pre_mu, 'kl_mu_slope': alpha_mu / sigma_bar ** 2 * jnp.ones_like(sigma),
      'delta_star_mu': jnp.abs(pre_mu) * sigma_bar ** 2 / max(alpha_mu, 1e-30),
  }


def drift(nets, action_dim, config: wpo.WPOConfig, state, batches, overrides) -> Dict[str, Any]:
  """|σ − σ̄| and σ after one refresh period of SGD steps from `state` with σ̄ = σ."""
  learner_config = dataclasses.replace(config.learner_config(), **overrides)
  learner = learning.make_learner(nets, action_dim, learner_config)
  period = learner_config.target_update_period
  # σ̄ = σ at a step count just past a refresh, so no copy happens in the next period − 1 steps.
  start = state._replace(target_params=state.params,
                         steps=jnp.asarray((int(state.steps) // period + 1) * period, jnp.int32))
  if learner_config.kl_mode == 'lagrange':  # Fresh duals, as a run in that mode starts with.
    start = start._replace(dual_params=learning.KLDuals(
        *(jnp.full_like(x, learner_config.init_log_dual) for x in start.dual_params)))
  fused = jax.jit(learning.fuse_sgd_steps(learner.sgd_step))
  end, metrics = fused(start, jax.tree_util.tree_map(lambda x: x[:period - 1], batches))
  observation = batches.observation[0]
  sigma = nets.policy.apply(end.params.policy, observation).stddev
  sigma_bar = nets.policy.apply(start.params.policy, observation).stddev
  mean_abs_by_step = [float(v) for v in metrics['kl_stddev']]
  return {
      'overrides': overrides,
      'mean_abs_sigma_change': float(jnp.mean(jnp.abs(sigma - sigma_bar))),
      'mean_sigma_change': float(jnp.mean(sigma - sigma_bar)),
      'sigma_mean_end': float(jnp.mean(sigma)),
      'per_dim_sigma_change': np.mean(np.asarray(sigma - sigma_bar), 0).tolist(),
      'kl_stddev_by_step': mean_abs_by_step,
      'kl_weight_stddev_end': float(metrics['kl_weight_stddev'][-1]),
  }


def exploration(replay_actions: np.ndarray, means: np.ndarray, stddevs: np.ndarray,
                key) -> Dict[str, Any]:
  """Bound hits of clipped Gaussians vs tanh-Gaussians, what the replay holds, and where the
  checkpoint's Gaussian policy puts its samples at the replay's states (means, stddevs [S, D])."""
  noise = np.asarray(jax.random.normal(key, (1_000_000,)))
  phi = np.vectorize(lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2))))
  # P(|μ + σε| ≥ 1) per state and dimension: the share of the actor's samples the box clips.
  clipped = phi((-1 - means) / stddevs) + 1 - phi((1 - means) / stddevs)
  table = {}
  for scale in (0.5, 1.0, 2.0, 3.0):
    a = np.clip(scale * noise, -1, 1)
    t = np.tanh(scale * noise)
    table[str(scale)] = {
        'gaussian_at_bounds_closed_form': 2 * phi(-1 / scale),
        'gaussian_at_bounds_mc': float(np.mean(np.abs(a) >= 1)),
        'gaussian_action_std': float(np.std(a)),
        'tanh_beyond_0.9': float(np.mean(np.abs(t) > 0.9)),
        'tanh_beyond_0.99': float(np.mean(np.abs(t) > 0.99)),
        'tanh_action_std': float(np.std(t)),
    }
  uniform_std = 1 / math.sqrt(3)
  return {
      'initial_policies_by_scale': table,
      'uniform_action_std': uniform_std,
      'replay_fraction_on_bounds': float(np.mean(np.abs(replay_actions) >= 1 - 1e-6)),
      'replay_fraction_on_bounds_per_dim': np.mean(np.abs(replay_actions) >= 1 - 1e-6,
                                                   0).tolist(),
      'replay_action_minus_current_mean_rms': float(
          np.sqrt(np.mean(np.square(replay_actions - np.clip(means, -1, 1))))),
      'current_mean_abs': float(np.mean(np.abs(means))),
      'current_fraction_of_means_outside_box': float(np.mean(np.abs(means) > 1)),
      'current_fraction_of_samples_clipped': float(np.mean(clipped)),
      'replay_action_std': float(np.std(replay_actions)),
  }


def plot_drift(results: Dict[str, Dict[str, Any]], png_path: str) -> None:
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(8, 4.5), dpi=100)
  axes = figure.add_subplot()
  names = list(results)
  values = [results[n]['mean_abs_sigma_change'] for n in names]
  axes.barh(range(len(names)), values, color='tab:blue')
  axes.set_yticks(range(len(names)), names)
  axes.set_xscale('log')
  axes.set_xlabel('mean |σ − σ̄| after one target period (99 SGD steps)')
  axes.set_title('σ movement per target refresh, cartpole:swingup checkpoint')
  axes.grid(True, alpha=0.3, axis='x')
  figure.tight_layout()
  plots.save_figure_atomically(figure, png_path)


def main(argv):
  del argv
  args = flags.FLAGS
  if not args.workdir or not args.out:
    sys.exit('error: --workdir (a run_wpo workdir with a checkpoint) and --out are required.')
  settings, config, spec = load_run(args.workdir)
  networks = wpo.make_networks(spec, config)
  nets, action_dim = networks.networks, networks.action_dim
  template = learning.make_learner(nets, action_dim, config.learner_config()).init(
      jax.random.PRNGKey(0), networks.observation_dim)
  checkpointer = checkpointing.RunCheckpointer(os.path.join(args.workdir, workdir_lib.CHECKPOINTS))
  restored = checkpointer.restore(template)
  if restored is None:
    sys.exit(f'error: no checkpoint in {args.workdir}/checkpoints.')
  state = jax.device_put(restored.learner_state)

  period = config.target_update_period
  builder = wpo.WPOBuilder(methods.single_process_replay(config))
  server = reverb_bind.start_server(builder.make_replay_tables(spec), '127.0.0.1',
                                    checkpointer=checkpointer.replay_checkpointer())
  try:
    client = reverb.Client(f'127.0.0.1:{server.port}')
    replay_size = sum(int(t.current_size) for t in client.server_info().values())
    iterator = builder.make_dataset_iterator(client)
    samples = []
    while len(samples) * config.batch_size * config.num_sgd_steps_per_step < (
        max(period, args.num_batches) * config.batch_size):
      samples.append(next(iterator).data)
  finally:
    server.stop()
  fields = ('observation', 'action', 'reward', 'discount', 'next_observation')
  flat = {f: np.concatenate([getattr(s, f) for s in samples]) for f in fields}
  batches = learning.Transition(*(
      flat[f][:period * config.batch_size].reshape((period, config.batch_size) +
                                                   flat[f].shape[1:]) for f in fields))

  key = jax.random.PRNGKey(args.seed)
  force_rows = []
  for index in range(args.num_batches):
    key, sample_key = jax.random.split(key)
    batch = jax.tree_util.tree_map(lambda x, i=index: x[i], batches)
    force_rows.append({k: np.asarray(v) for k, v in forces(nets, config, state, batch,
                                                           sample_key).items()})
  force_summary = {k: _stats(np.concatenate([row[k] for row in force_rows]))
                   for k in force_rows[0]}

  drift_results = {name: drift(nets, action_dim, config, state, batches, overrides)
                   for name, overrides in VARIANTS.items()}
  # The tanh-Gaussian head has the Gaussian's parameters: the same state read as pre-squash
  # (μ, σ), so its balance is measured at the same σ (its actions, tanh(μ + σε), differ).
  tanh_config = dataclasses.replace(config, policy='tanh_gaussian')
  tanh_nets = wpo.make_networks(spec, tanh_config).networks
  for name, overrides in TANH_VARIANTS.items():
    drift_results[name] = drift(tanh_nets, action_dim, tanh_config, state, batches, overrides)

  observation = batches.observation.reshape(-1, batches.observation.shape[-1])
  current = nets.policy.apply(state.params.policy, observation)
  key, explore_key = jax.random.split(key)
  result = {
      'workdir': args.workdir, 'env': settings['task'],
      'counts': restored.counts, 'replay_size': replay_size,
      'learner_steps': int(state.steps), 'action_dim': action_dim,
      'batch_size': config.batch_size, 'num_action_samples': config.num_action_samples,
      'kl_weight_stddev': config.kl_weight_stddev, 'kl_weight_mean': config.kl_weight_mean,
      'target_update_period': period,
      'forces_per_state': force_summary,
      'drift_one_period': drift_results,
      'exploration': exploration(batches.action.reshape(-1, action_dim),
                                 np.asarray(current.mean), np.asarray(current.stddev),
                                 explore_key),
  }
  os.makedirs(args.out, exist_ok=True)
  atomic_files.atomic_write(os.path.join(args.out, 'sigma_balance.json'),
                            json.dumps(result, indent=1).encode())
  plot_drift(drift_results, os.path.join(args.out, 'sigma_drift.png'))
  print(json.dumps(result, indent=1))


if __name__ == '__main__':
  # Defined here, so that tests may import this module next to launchers with the same flags.
  flags.DEFINE_string('workdir', None, 'A run_wpo workdir with a checkpoint.')
  flags.DEFINE_string('out', None, 'Where sigma_balance.json and sigma_drift.png go.')
  flags.DEFINE_integer('num_batches', 4, 'Replay batches for the force figures.')
  flags.DEFINE_integer('seed', 0, 'Sampling seed.')
  app.run(main)
