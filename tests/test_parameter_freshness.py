"""Actors act with the learner's online parameters, at most `variable_update_period` steps old.

The local run wires a training actor to the learner as `builder.make_actor(key, policy, adder,
variable_source=learner)` and interleaves `learner.step()` with `actor.update()` (Acme's
`Agent`). The test does the same with the builder's public pieces and a deterministic policy (the
evaluator's mode), so each action reveals which parameters the actor held: it must be the action
of the online parameters of a recent learner step, never of the target networks'.
"""

import json
import os
import subprocess
import sys
import time

import agents  # noqa: F401  (dm-acme patches before acme is imported)
from acme import adders
from acme.testing import fakes
from acme import specs
import jax
import numpy as np
import reverb

from agents import wpo
from wpo_jax import learning

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPDATE_PERIOD = 5
NUM_STEPS = 40


class _NoOpAdder(adders.Adder):
  """A training actor needs an adder (evaluators, without one, fetch per episode instead)."""

  def add_first(self, timestep):
    pass

  def add(self, action, next_timestep, extras=()):
    pass

  def reset(self):
    pass


def _batches(config, observation_dim, action_dim):
  rng = np.random.default_rng(0)
  size = config.batch_size * config.num_sgd_steps_per_step
  while True:
    yield reverb.ReplaySample(info=None, data=learning.Transition(
        observation=rng.normal(size=(size, observation_dim)).astype(np.float32),
        action=rng.uniform(-1, 1, (size, action_dim)).astype(np.float32),
        reward=rng.normal(size=(size,)).astype(np.float32),
        discount=np.full((size,), 0.9, np.float32),
        next_observation=rng.normal(size=(size, observation_dim)).astype(np.float32)))


def test_local_actor_acts_with_fresh_online_parameters():
  environment = fakes.ContinuousEnvironment(action_dim=2, observation_dim=3, episode_length=1000,
                                            bounded=True)
  spec = specs.make_environment_spec(environment)
  config = wpo.make_config('default', num_action_samples=4, policy_layers=(16, 16),
                           critic_layers=(16, 16), batch_size=8, learning_rate=1e-2,
                           variable_update_period=UPDATE_PERIOD, target_update_period=10_000)
  networks = wpo.make_networks(spec, config)
  builder = wpo.WPOBuilder(config)
  learner = builder.make_learner(jax.random.PRNGKey(0), networks,
                                 _batches(config, networks.observation_dim, networks.action_dim))
  mode = jax.jit(wpo.make_policy(networks, evaluation=True))
  actor = builder.make_actor(jax.random.PRNGKey(1), mode, _NoOpAdder(), variable_source=learner)

  observation = np.asarray(environment.reset().observation, np.float32)
  actor.observe_first(environment.reset())
  history = [learner.save().params.policy]  # history[j]: online policy after j learner steps.
  staleness = []
  for t in range(NUM_STEPS):
    action = actor.select_action(observation)
    candidates = [np.asarray(mode(p, jax.random.PRNGKey(0), observation[None])[0])
                  for p in history]
    matching = [j for j, a in enumerate(candidates) if np.allclose(a, action, atol=1e-6)]
    assert matching, f'step {t}: the action matches no online parameters the learner had'
    staleness.append(t - max(matching))
    actor.observe(action, environment.step(action))
    learner.step()
    history.append(learner.save().params.policy)
    actor.update()
    if (t + 1) % UPDATE_PERIOD == 0:
      # This update started the variable client's background fetch: let it land before the
      # next act, as it does in a run (an environment step takes far longer than a fetch).
      time.sleep(0.1)

  # Fetched every UPDATE_PERIOD updates: never older than that, and refreshed on schedule.
  assert max(staleness) <= UPDATE_PERIOD, staleness
  assert staleness[UPDATE_PERIOD:2 * UPDATE_PERIOD] == list(range(UPDATE_PERIOD))
  # The online parameters, not the target networks' (held at the initial ones here): by the end
  # they act differently.
  state = learner.save()
  target_action = mode(state.target_params.policy, jax.random.PRNGKey(0), observation[None])[0]
  assert np.max(np.abs(np.asarray(target_action) - action)) > 1e-3


# The distributed run: the same builder call in each Ray actor, parameters through the learner's
# Ray handle. Run in a fresh process (Ray pickles the recording classes of its __main__ by
# value), with the launcher's tiny settings.
_DISTRIBUTED_SCRIPT = '''
import json, os, sys, functools
import agents
import jax
import numpy as np
from agents import methods, wpo
from runner import distributed, experiment, process, ray_cluster
from runner import workdir as workdir_lib

process.prepare()

RECORDS, PERIOD = sys.argv[2], int(sys.argv[3])


def _append(name, row):
  with open(os.path.join(RECORDS, f'{name}-{os.getpid()}.jsonl'), 'a') as f:
    f.write(json.dumps(row) + '\\n')


def _same(a, b):
  return all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.array_equal, a, b)))


class RecordingLearner:
  """The builder's learner; each get_variables notes whether it served online parameters."""

  def __init__(self, learner):
    self._learner = learner

  def __getattr__(self, name):
    return getattr(self._learner, name)

  def get_variables(self, names):
    # Under the learner's lock no step lands between the three reads, so they see one state:
    # the served policy must be that state's online one.
    with self._learner._lock:  # pylint: disable=protected-access
      before = self._learner.save()
      served = self._learner.get_variables(names)
      after = self._learner.save()
    _append('learner', {'online': _same(served[0], before.params.policy)
                                  and _same(served[0], after.params.policy)
                                  and int(before.steps) == int(after.steps),
                        'steps': int(before.steps)})
    return served


class RecordingSource:
  def __init__(self, source):
    self._source = source

  def get_variables(self, names):
    _append('actor', {'fetch': 1})
    return self._source.get_variables(names)


class RecordingBuilder(wpo.WPOBuilder):
  def make_learner(self, *args, **kwargs):
    return RecordingLearner(super().make_learner(*args, **kwargs))

  def make_actor(self, random_key, policy_network, adder=None, variable_source=None):
    if adder is not None:
      variable_source = RecordingSource(variable_source)
    return super().make_actor(random_key, policy_network, adder, variable_source)


def make_parts(config, spec, logger_fn, single_process):
  parts = methods.wpo_agent_parts(config, spec, logger_fn, single_process)
  return parts._replace(builder=RecordingBuilder(config, logger_fn=logger_fn))


config = wpo.make_config('cpu', policy_layers=(32, 32), critic_layers=(32, 32),
                         num_action_samples=4, batch_size=32, samples_per_insert=8.0,
                         min_replay_size=200, variable_update_period=PERIOD)
run = experiment.ExperimentConfig(
    make_parts=functools.partial(make_parts, config), task='cartpole:swingup', seed=0,
    workdir=sys.argv[1], num_steps=3000, eval_every=3000, eval_episodes=1,
    settings=workdir_lib.run_settings('wpo', 'cartpole:swingup', 0, 3000, 1, wpo_config=config),
    title='freshness', progress=False)
distributed.run(run, ray_cluster.Cluster(num_actors=1))
'''


def _read_records(directory, name):
  rows = []
  for file_name in sorted(os.listdir(directory)):
    if file_name.startswith(name + '-'):
      with open(os.path.join(directory, file_name)) as f:
        rows.extend(json.loads(line) for line in f)
  return rows


def test_distributed_actors_fetch_online_parameters_every_update_period(tmp_path):
  records = tmp_path / 'records'
  records.mkdir()
  workdir = tmp_path / 'run'
  period = 100
  result = subprocess.run(
      [sys.executable, '-c', _DISTRIBUTED_SCRIPT, str(workdir), str(records), str(period)],
      cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  served = _read_records(records, 'learner')
  fetches = len(_read_records(records, 'actor'))
  # Every fetch through the learner's Ray handle served its online parameters, and some of
  # them after learning had started (so online and initial parameters differ).
  assert served and all(row['online'] for row in served)
  assert max(row['steps'] for row in served) > 0
  with open(workdir / 'checkpoints' / 'manifest.json') as f:
    counts = json.load(f)['counts']
  # The one training actor asks every `period` of its steps, once the previous request (a Ray
  # round trip to the busy learner) has come back: intervals are `period` plus that latency,
  # measured at a few steps (28 fetches in 3000 steps at period 100 on 2 loaded cores).
  # Evaluators fetch per episode and are not counted here.
  assert counts['actor_steps'] // (2 * period) <= fetches <= counts['actor_steps'] // period + 1, (
      fetches, counts)
