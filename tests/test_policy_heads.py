"""Policy heads (gaussian, mixture, tanh_gaussian) through networks, the learner and the agent."""

import csv
import json
import os
import subprocess
import sys

from flax import serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from test_run_wpo import launch
from wpo_jax import distributions
from wpo_jax import learning
from wpo_jax import networks

OBSERVATION_DIM = 3
ACTION_DIM = 2
TINY_LAYERS = (16, 16)


def _batch(key, batch_size=8):
  keys = jax.random.split(key, 3)
  observation = jax.random.normal(keys[0], (batch_size, OBSERVATION_DIM))
  action = jax.random.uniform(keys[1], (batch_size, ACTION_DIM), minval=-1.0, maxval=1.0)
  return learning.Transition(observation, action, jax.random.normal(keys[2], (batch_size,)),
                             jnp.full((batch_size,), 0.9), observation)


def test_make_networks_builds_each_head():
  observation = jnp.ones((4, OBSERVATION_DIM))
  kinds = {'gaussian': distributions.DiagonalGaussian,
           'tanh_gaussian': distributions.TanhGaussian,
           'mixture': distributions.MixtureGaussian}
  assert set(kinds) == set(networks.POLICIES)
  for name, kind in kinds.items():
    policy = networks.make_networks(ACTION_DIM, TINY_LAYERS, TINY_LAYERS, policy=name,
                                    num_components=3).policy
    params = jax.jit(policy.init)(jax.random.PRNGKey(0), observation)
    distribution = jax.jit(policy.apply)(params, observation)
    assert isinstance(distribution, kind)
    assert distribution.mode().shape == (4, ACTION_DIM)
    np.testing.assert_allclose(distribution.stddev, 0.5, atol=0.01)  # init_scale.
  with pytest.raises(ValueError, match='valid policies'):
    networks.make_networks(ACTION_DIM, policy='beta')


def test_mixture_components_start_spread_out_with_uniform_weights():
  observation = jnp.ones((1, OBSERVATION_DIM))
  policy = networks.MixtureGaussianPolicy(ACTION_DIM, 3, TINY_LAYERS)
  mixture = policy.apply(policy.init(jax.random.PRNGKey(0), observation), observation)
  assert mixture.mean.shape == mixture.stddev.shape == (1, 3, ACTION_DIM)
  np.testing.assert_allclose(mixture.weights(), 1.0 / 3.0, atol=0.01)
  # Centres of three equal bins of [−1, 1], in every dimension.
  np.testing.assert_allclose(mixture.mean[0], [[-2 / 3] * 2, [0.0] * 2, [2 / 3] * 2], atol=0.02)


# The Gaussian head's step is covered by tests/test_learning.py; each case here costs a compile.
@pytest.mark.parametrize('policy, overrides', [
    ('tanh_gaussian', {}),
    ('mixture', {}),
    ('mixture', {'fisher_damping': 1e-3, 'kl_mode': 'lagrange'}),
])
def test_learner_step_with_each_head_is_finite_and_moves_the_policy(policy, overrides):
  nets = networks.make_networks(ACTION_DIM, TINY_LAYERS, TINY_LAYERS, policy=policy,
                                num_components=2)
  config = learning.LearnerConfig(num_action_samples=4, **overrides)
  learner = learning.make_learner(nets, ACTION_DIM, config)
  state = learner.init(jax.random.PRNGKey(0), OBSERVATION_DIM)
  step = jax.jit(learner.sgd_step)
  new_state = state
  for i in range(2):
    new_state, metrics = step(new_state, _batch(jax.random.PRNGKey(i)))
    assert bool(metrics['finite']), metrics
    assert all(np.all(np.isfinite(v)) for v in jax.device_get(metrics).values())
  moved = jax.tree_util.tree_map(lambda a, b: not np.allclose(a, b), new_state.params.policy,
                                 state.params.policy)
  assert any(jax.tree_util.tree_leaves(moved))
  assert float(metrics['kl_mean']) > 0.0


def test_fisher_damping_must_be_positive():
  with pytest.raises(ValueError, match='fisher_damping'):
    learning.LearnerConfig(fisher_damping=0.0)


# The agent (Acme) side: config fields, networks for a spec, acting.


def _spec():
  import agents  # pylint: disable=g-import-not-at-top,unused-import  (dm-acme patches first)
  from acme import specs  # pylint: disable=g-import-not-at-top
  from acme.testing import fakes  # pylint: disable=g-import-not-at-top
  environment = fakes.ContinuousEnvironment(action_dim=ACTION_DIM,
                                            observation_dim=OBSERVATION_DIM, bounded=True)
  return specs.make_environment_spec(environment)


@pytest.mark.parametrize('field, value', [('policy', 'beta'), ('num_components', 0)])
def test_agent_config_rejects_bad_policy_fields(field, value):
  from agents import wpo  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=field):
    wpo.WPOConfig(**{field: value})


@pytest.mark.parametrize('policy', networks.POLICIES)
def test_agent_policies_act_inside_the_box_for_each_head(policy):
  from agents import wpo  # pylint: disable=g-import-not-at-top
  spec = _spec()
  config = wpo.make_config('default', policy=policy, num_components=3,
                           policy_layers=TINY_LAYERS, critic_layers=TINY_LAYERS)
  nets = wpo.make_networks(spec, config)
  observation = jnp.ones((5, OBSERVATION_DIM))
  params = nets.networks.policy.init(jax.random.PRNGKey(0), observation)
  for evaluation in (False, True):
    act = jax.jit(wpo.make_policy(nets, evaluation))
    actions = act(params, jax.random.PRNGKey(1), observation)
    assert actions.shape == (5, ACTION_DIM)
    assert float(jnp.max(jnp.abs(actions))) <= 1.0
    # Training actors sample (another key, other actions); the evaluator does not.
    other = act(params, jax.random.PRNGKey(2), observation)
    assert np.array_equal(actions, other) == evaluation


def _numpy_mixture_log_density(logits, mean, stddev, points):
  """log Σ_k w_k N(points; μ_k, σ_k²) for points [P, D], from [K], [K, D], [K, D] (float64)."""
  logits, mean, stddev = (np.asarray(x, np.float64) for x in (logits, mean, stddev))
  log_w = logits - np.logaddexp.reduce(logits)
  z = (points[:, None, :] - mean) / stddev  # [P, K, D]
  log_n = np.sum(-0.5 * z**2 - np.log(stddev) - 0.5 * np.log(2 * np.pi), axis=-1)
  return np.logaddexp.reduce(log_w + log_n, axis=-1)


# Output-layer biases that give a known, state-independent mode inside the box: the heaviest
# component is wide, a lighter narrow one holds the highest density (so the mode is neither the
# mean of the mixture nor the heaviest component's mean).
_MIXTURE_BIASES = {
    'logits': np.array([1.0, 0.0, -0.5]),
    'mean': np.array([-0.5, 0.4, 0.3, -0.2, 0.6, 0.6]),
    'pre_scale': np.array([0.0, 0.0, -2.0, -1.5, -1.0, -1.0]),
}


@pytest.mark.parametrize('policy', networks.POLICIES)
def test_evaluation_acts_with_the_mode(policy):
  """The evaluator's action ignores the key and is the mean, tanh(mean), or the mixture's
  highest-density action (a grid argmax of the density written out in numpy)."""
  from agents import wpo  # pylint: disable=g-import-not-at-top
  config = wpo.make_config('default', policy=policy, num_components=3,
                           policy_layers=TINY_LAYERS, critic_layers=TINY_LAYERS)
  nets = wpo.make_networks(_spec(), config)
  observation = jax.random.normal(jax.random.PRNGKey(3), (4, OBSERVATION_DIM))
  params = nets.networks.policy.init(jax.random.PRNGKey(0), observation)
  if policy == 'mixture':
    params = jax.tree_util.tree_map(lambda x: x, params)  # A mutable copy.
    for layer, bias in _MIXTURE_BIASES.items():
      params['params'][layer]['bias'] = jnp.asarray(bias, jnp.float32)
  else:  # State-dependent means well inside the box.
    params['params']['mean']['kernel'] = 0.3 * jax.random.normal(
        jax.random.PRNGKey(4), params['params']['mean']['kernel'].shape)
  act = jax.jit(wpo.make_policy(nets, evaluation=True))
  actions = np.asarray(act(params, jax.random.PRNGKey(1), observation))
  for seed in (2, 3):
    np.testing.assert_array_equal(act(params, jax.random.PRNGKey(seed), observation), actions)

  distribution = nets.networks.policy.apply(params, observation)
  if policy == 'gaussian':
    expected = np.asarray(distribution.mean)
  elif policy == 'tanh_gaussian':
    expected = np.tanh(np.asarray(distribution.mean))
  else:
    axis = np.linspace(-1.0, 1.0, 401)
    grid = np.stack(np.meshgrid(axis, axis, indexing='ij'), -1).reshape(-1, ACTION_DIM)
    expected = np.stack([grid[np.argmax(_numpy_mixture_log_density(
        distribution.logits[b], distribution.mean[b], distribution.stddev[b], grid))]
                         for b in range(observation.shape[0])])
    heaviest = np.asarray(distribution.mean[:, 0])
    assert np.min(np.linalg.norm(expected - heaviest, axis=-1)) > 0.3
  assert 0.05 < np.max(np.abs(expected)) < 0.95
  np.testing.assert_allclose(actions, expected, atol=6e-3 if policy == 'mixture' else 1e-6)


def test_launcher_config_flag_selects_the_policy_head():
  """`--config=policy=mixture --config=num_components=3` reaches WPOConfig."""
  from agents import wpo  # pylint: disable=g-import-not-at-top
  from experiments import train_cli  # pylint: disable=g-import-not-at-top
  overrides = train_cli.parse_overrides(['policy=mixture', 'num_components=3'])
  assert overrides == {'policy': 'mixture', 'num_components': 3}
  config = wpo.make_config('cpu', **overrides)
  assert (config.policy, config.num_components) == ('mixture', 3)
  with pytest.raises(ValueError, match='policy'):
    wpo.make_config('cpu', **train_cli.parse_overrides(['policy=beta']))


def mixture_components_in_checkpoint(workdir) -> int:
  """K of the mixture head in a run's last learner checkpoint (0 for a head with no logits)."""
  directory = os.path.join(str(workdir), 'checkpoints')
  with open(os.path.join(directory, 'manifest.json')) as f:
    learner_file = json.load(f)['learner']
  with open(os.path.join(directory, learner_file), 'rb') as f:
    state = serialization.msgpack_restore(f.read())
  policy = state['params']['policy']['params']
  return policy['logits']['bias'].shape[-1] if 'logits' in policy else 0


def test_policy_flags_select_the_head_of_a_local_run(tmp_path):
  """`--policy=mixture --num_components=3` trains a 3-component mixture end to end."""
  workdir = tmp_path / 'run'
  result = launch(str(workdir), '--policy=mixture', '--num_components=3', '--num_steps=1500',
                  '--eval_every=1500')
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert mixture_components_in_checkpoint(workdir) == 3
  with open(workdir / 'run.json') as f:
    config = json.load(f)['wpo_config']
  assert (config['policy'], config['num_components']) == ('mixture', 3)


@pytest.mark.slow
@pytest.mark.parametrize('policy', networks.POLICIES)
def test_control_suite_run_improves_on_the_untrained_policy(policy, tmp_path):
  """cartpole:swingup, 20k steps of the cpu preset: the best evaluation after training beats the
  untrained policy's (every head's untrained mode acts near 0: a return of about 0–1) by 50."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  workdir = tmp_path / policy
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.run_wpo', '--env=cartpole:swingup', '--preset=cpu',
       f'--policy={policy}', '--num_steps=20000', '--eval_every=10000',
       '--eval_episodes=2', '--progress=false', '--video=false', f'--workdir={workdir}'],
      cwd=repo, capture_output=True, text=True, timeout=3600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  with open(workdir / 'logs' / 'evaluator' / 'logs.csv') as f:
    rows = list(csv.DictReader(f))
  returns = {}
  for row in rows:
    returns.setdefault(int(float(row['actor_steps'])), []).append(float(row['episode_return']))
  untrained = np.mean(returns.pop(0))
  best = max(np.mean(r) for r in returns.values())
  assert best > untrained + 50.0, (untrained, returns)
