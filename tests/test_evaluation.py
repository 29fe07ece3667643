"""`runner.wiring.Evaluator` while training goes on (as in a Ray run): one policy per evaluation,
logged at the counts the evaluation began at. A real learner, environment and Acme loop."""

import csv
import dataclasses
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
from runner import evaluation_schedule
from runner import experiment
from runner import plots
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

  began = evaluator.evaluate()
  assert (began['actor_steps'], began['learner_steps']) == (2000, 500)  # What labels its rows.
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


CONFIG = experiment.ExperimentConfig(
    make_parts=None, task=TASK, seed=0, workdir='unused', num_steps=5000, eval_every=2000,
    eval_episodes=3, settings={}, title='evaluation', progress=False)
# Every evaluation of an uninterrupted local run of CONFIG with 1000-step episodes: the untrained
# policy's, each multiple of eval_every, the budget; `eval_episodes` rows each.
LOCAL_CURVE = {0: 3, 2000: 3, 4000: 3, 5000: 3}


def test_the_next_evaluation_is_the_first_point_at_or_past_the_schedules_place():
  due_from = (0, 1, 1999, 2000, 2001, 4000, 4001, 5000, 5001, 9000)
  assert [evaluation_schedule.next_evaluation({'evaluator_due_from': d}, CONFIG)
          for d in due_from] == [
      0, 2000, 2000, 2000, 4000, 4000, 5000, 5000, None, None]
  # A budget that is a multiple of eval_every is its last multiple's point, not a second one.
  at_a_multiple = dataclasses.replace(CONFIG, num_steps=4000)
  assert [evaluation_schedule.next_evaluation({'evaluator_due_from': d}, at_a_multiple)
          for d in (2001, 4000, 4001)] == [4000, 4000, None]


class _SimulatedRun:
  """`evaluation_schedule.run_evaluations` with the runner's parts faked: the counter is an Acme
  Counter, the actors take `episode_steps` a training episode, and while an evaluation plays,
  the actors take `steps_meanwhile` more per evaluation episode (0 in the local runner; a Ray
  run's go on).

  Events are each evaluation episode (before it ends) and each return from `reach`; at event
  `stop_at` a SIGTERM stops the run, as `wiring.Terminated`. The runners' final checkpoint then
  holds the counter's counts, which `run` returns (None when the run completed). `rows` are the
  evaluator's log rows: the actor steps the evaluation began at, and `evaluator_episodes`."""

  def __init__(self, restored=None, episode_steps=1000, steps_meanwhile=0, stop_at=None):
    self.counter = counting.Counter()
    self.counter.increment(**wiring.initial_counts(restored, CONFIG))
    self._episode_steps, self._meanwhile, self._stop_at = episode_steps, steps_meanwhile, stop_at
    self.events, self.rows = 0, []

  def _event(self):
    self.events += 1
    if self.events == self._stop_at:
      raise wiring.Terminated('SIGTERM')

  def _evaluate(self):
    began = self.counter.get_counts()
    for _ in range(CONFIG.eval_episodes):
      self._event()
      # Ray's actors stop at the budget.
      left = CONFIG.num_steps - self.counter.get_counts()['actor_steps']
      meanwhile = min(self._meanwhile, max(0, left))
      counts = self.counter.increment(evaluator_episodes=1, actor_steps=meanwhile)
      self.rows.append((began['actor_steps'], counts['evaluator_episodes']))
    return began

  def _reach(self, steps):
    while self.counter.get_counts()['actor_steps'] < steps:
      self.counter.increment(actor_steps=self._episode_steps)
    self._event()

  def run(self):
    try:
      evaluation_schedule.run_evaluations(CONFIG, self.counter, self._evaluate, self._reach)
    except wiring.Terminated:
      return self.counter.get_counts()
    return None


def _curve(rows, tmp_path):
  """{step: episodes} of the evaluator log these rows make, as `runner.plots` reads it (its
  surviving timeline: rows a later one numbered again are dropped)."""
  path = tmp_path / 'evaluator.csv'
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow([plots.STEP_COLUMN, plots.RETURN_COLUMN, plots.TIMELINE_COLUMN])
    writer.writerows((step, 1.0, episodes) for step, episodes in rows)
  curve = plots.aggregate(plots.read_returns(str(path)))
  return dict(zip(curve.steps, curve.counts))


def test_an_uninterrupted_local_run_evaluates_every_point_once(tmp_path):
  run = _SimulatedRun()
  assert run.run() is None
  assert _curve(run.rows, tmp_path) == LOCAL_CURVE and len(run.rows) == 12
  assert run.counter.get_counts()['evaluator_due_from'] == 5001
  # Episodes longer than eval_every overshoot a point: the late evaluation stands for the points
  # it passed (here 2000 and, at 4500, 4000), none is played twice.
  run = _SimulatedRun(episode_steps=1500)
  run.run()
  assert _curve(run.rows, tmp_path) == {0: 3, 3000: 3, 4500: 3, 6000: 3}


def test_a_local_run_stopped_at_any_moment_resumes_to_the_same_curve(tmp_path):
  """Every event of the run in turn is the stop: during each evaluation episode (the evaluation
  is cut short), and just after training reached each point (before its evaluation began: the
  point once lost from a panel run). A second launch from the checkpoint's counts completes it."""
  events = _SimulatedRun()
  events.run()
  for stop_at in range(1, events.events + 1):
    first = _SimulatedRun(stop_at=stop_at)
    checkpoint = first.run()
    assert checkpoint is not None
    resumed = _SimulatedRun(restored=checkpoint)
    assert resumed.run() is None
    assert _curve(first.rows + resumed.rows, tmp_path) == LOCAL_CURVE, stop_at
    # Nothing evaluated twice but the episodes of the one evaluation the stop cut short.
    assert len(first.rows) + len(resumed.rows) - 12 == checkpoint['evaluator_episodes'] % 3


def test_a_ray_evaluator_stopped_at_any_moment_keeps_whole_evaluations(tmp_path):
  """While it evaluates, the actors go on (300 steps an evaluation episode, so an evaluation
  lags its point by up to LAG): an evaluation a stop cut short is played again whole at the
  restored counts and its cut rows leave the curve; a point reached before the stop is evaluated
  as soon as the resumed evaluator can, not skipped for the next one."""
  lag = 3 * 300
  uninterrupted = _SimulatedRun(steps_meanwhile=300)
  uninterrupted.run()
  # Training episodes of 1000 steps from where the last evaluation left the actors (900, 3800)
  # reach 2000 at 2900 and 4000 at 4800; the actors stop at the budget during the one at 4800.
  assert _curve(uninterrupted.rows, tmp_path) == {0: 3, 2900: 3, 4800: 3, 5000: 3}
  for stop_at in range(1, uninterrupted.events + 1):
    first = _SimulatedRun(steps_meanwhile=300, stop_at=stop_at)
    checkpoint = first.run()
    resumed = _SimulatedRun(restored=checkpoint, steps_meanwhile=300)
    resumed.run()
    curve = _curve(first.rows + resumed.rows, tmp_path)
    assert set(curve.values()) == {3}, (stop_at, curve)
    # Each point has a whole evaluation begun at most a replayed evaluation, the one in progress
    # and a training episode after it (one begun at the budget stands for 4000 too when the
    # actors reached the budget during the evaluation a stop cut short); none beyond.
    assert len(curve) <= 4, (stop_at, curve)
    for point in (0, 2000, 4000, 5000):
      assert any(point <= step <= point + 2 * lag + 1000 for step in curve), (stop_at, curve)


def test_checkpoints_from_before_the_schedule_was_counted_resume_where_they_were(tmp_path):
  """Their runs evaluated each point in turn; the place comes from the whole evaluations."""
  def resumed_curve(actor_steps, played):
    run = _SimulatedRun(restored={'actor_steps': actor_steps, 'evaluator_episodes': played})
    run.run()
    return _curve(run.rows, tmp_path)
  # Stopped while training towards 4000: the evaluations at 0 and 2000 are done.
  assert resumed_curve(3000, 6) == {4000: 3, 5000: 3}
  # Stopped at 2000 before its evaluation began (3 played): owed, evaluated first.
  assert resumed_curve(2000, 3) == {2000: 3, 4000: 3, 5000: 3}
  # Stopped during the 2000 evaluation (4 played): played again whole.
  assert resumed_curve(2000, 4) == {2000: 3, 4000: 3, 5000: 3}
  # A fresh run (nothing restored) begins with the untrained policy.
  assert wiring.initial_counts(None, CONFIG)['evaluator_due_from'] == 0
