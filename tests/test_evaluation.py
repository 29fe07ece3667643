"""`runner.wiring.Evaluator` while training goes on (as in a Ray run): one policy per evaluation,
logged at the counts the evaluation began at. A real learner, environment and Acme loop."""

import functools

import agents  # pylint: disable=unused-import  (patches dm-acme so that acme imports)
from acme import core
from acme import specs
from acme.utils import counting
from acme.utils import loggers
import jax

from agents import environments
from agents import methods
from agents import wpo
from runner import experiment
from runner import wiring
import recording_logger  # tests/recording_logger.py

TASK = 'cartpole:swingup'


class _TrainingMeanwhile(core.VariableSource):
  """The learner's variables, as a busy run serves them: between two fetches the actors have
  taken 1000 steps and the learner 10 SGD steps, and the policy has changed (shifted by the
  number of fetches so far)."""

  def __init__(self, learner, counter: counting.Counter):
    self._learner, self._counter = learner, counter
    self.fetches = 0

  def get_variables(self, names):
    self.fetches += 1
    self._counter.increment(actor_steps=1000, learner_steps=10)
    variables = self._learner.get_variables(names)
    return [jax.tree_util.tree_map(lambda x: x + 0.01 * self.fetches, v) for v in variables]


def test_an_evaluation_plays_one_policy_and_logs_the_counts_it_began_at(tmp_path):
  config = wpo.make_config('cpu', policy_layers=(16, 16), critic_layers=(16, 16),
                           num_action_samples=2, batch_size=8)
  run = experiment.ExperimentConfig(
      make_parts=functools.partial(methods.wpo_agent_parts, config), task=TASK, seed=0,
      workdir=str(tmp_path), num_steps=4000, eval_every=2000, eval_episodes=2, settings={},
      title='evaluation', progress=False)
  spec = specs.make_environment_spec(environments.make_environment(TASK, 0))
  parts = run.make_parts(spec, loggers.NoOpLogger, True)
  learner = parts.builder.make_learner(jax.random.PRNGKey(0), parts.networks, iter(()))
  counter = counting.Counter()
  counter.increment(actor_steps=2000, learner_steps=500)
  source, log = _TrainingMeanwhile(learner, counter), recording_logger.RecordingLogger()
  evaluator = wiring.Evaluator(run, parts, source, counter, logger=log)

  evaluator.evaluate()
  # One fetch for both episodes, though the run's counts moved on meanwhile.
  assert source.fetches == 1 and counter.get_counts()['actor_steps'] == 3000
  assert [(r['actor_steps'], r['learner_steps']) for r in log.rows] == [(2000, 500)] * 2
  # The evaluator's own counts are the episodes' own.
  assert [r['evaluator_episodes'] for r in log.rows] == [1, 2]
  assert [r['evaluator_steps'] for r in log.rows] == [1000, 2000]

  evaluator.evaluate()  # The next evaluation fetches anew and is logged at the new counts.
  assert source.fetches == 2
  assert [(r['actor_steps'], r['learner_steps']) for r in log.rows[2:]] == [(3000, 510)] * 2
  assert [r['evaluator_episodes'] for r in log.rows[2:]] == [3, 4]


def _counts(actor_steps, evaluator_episodes):
  return {'actor_steps': actor_steps, 'evaluator_episodes': evaluator_episodes}


def test_the_evaluations_a_run_owes_when_it_starts_or_resumes():
  config = experiment.ExperimentConfig(
      make_parts=None, task=TASK, seed=0, workdir='unused', num_steps=5000, eval_every=2000,
      eval_episodes=3, settings={}, title='evaluation', progress=False)
  # Only a fresh run evaluates the untrained policy first; a resume at 0 steps has begun it.
  assert wiring.evaluate_first(_counts(0, 0))
  assert not wiring.evaluate_first(_counts(0, 1)) and not wiring.evaluate_first(_counts(2000, 0))
  # The local runner: at 0 steps the untrained policy's evaluation, or what a stop left of it.
  assert [wiring.owed_evaluation(_counts(0, played), config) for played in range(4)] == [
      3, 2, 1, 0]
  # Between two evaluation points (a stop while training): only the rest of a cut evaluation.
  assert [wiring.owed_evaluation(_counts(1000, played), config) for played in (3, 4, 5)] == [
      0, 2, 1]
  # At an evaluation point: the rest of a cut evaluation, and a whole one where the stop came
  # after training reached the point but before its evaluation's first episode ended (3 or 0
  # played: the point's evaluation not begun), none once it is complete (6).
  assert [wiring.owed_evaluation(_counts(2000, played), config)
          for played in range(7)] == [3, 2, 1, 3, 2, 1, 0]
  # Past a point the local runner overshot (episode ends after the multiple): the same.
  assert [wiring.owed_evaluation(_counts(2500, played), config) for played in (3, 6)] == [3, 0]
  # The budget (not a multiple of eval_every) is a point of its own, even when overshot.
  for steps in (5000, 6000):
    assert [wiring.owed_evaluation(_counts(steps, played), config)
            for played in (9, 10, 12)] == [3, 2, 0]
  # The curve's points then follow at each eval_every, the last at the budget.
  assert [wiring.next_evaluation(steps, config) for steps in (0, 1999, 2000, 4000, 5000)] == [
      2000, 2000, 4000, 5000, None]
