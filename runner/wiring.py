"""The pieces of a run, built once for both runners: `runner.local` and `runner.distributed`.

Learner (+ restore from the workdir's checkpoint), actors, the evaluator and its loop (when it
evaluates: `runner.evaluation_schedule`), the checkpoint cadence, the counts (wall-clock
included), the progress bar, the final checkpoint on completion or Ctrl-C, and the video. The
local runner calls them in one process; the Ray workers each wrap the ones they need, with Ray
handles standing in for the learner (a `VariableSource`) and the counter (a `Counter`).
"""

import contextlib
import os
import signal
import threading
import time
from typing import Any, Dict, Iterator, Mapping, NamedTuple, Optional, Tuple

from absl import logging
import agents  # noqa: F401  (the hook that lets acme import; see agents/acme_compat.py)
from acme import core
from acme.environment_loop import EnvironmentLoop
from acme.utils import counting
from acme.utils import loggers
import jax
import tqdm

from agents import acme_compat
from agents import checkpointing
from agents import environments
from agents import policy_stats
from agents import video
from runner import evaluation_schedule
from runner import experiment
from runner import plots
from runner import workdir as workdir_lib

# Evaluation and video environments use seeds far from the training ones.
EVAL_SEED_OFFSET = 1_000_003
VIDEO_SEED_OFFSET = 2_000_003
# The evaluator's counts are the run's counter's keys with this prefix (evaluator_episodes, ...).
EVALUATOR_COUNTS = 'evaluator'


class Keys(NamedTuple):
  """The run's PRNG keys, one per role, from its seed (the same in both runners)."""
  learner: jax.Array
  actor: jax.Array
  evaluator: jax.Array


def keys(seed: int) -> Keys:
  return Keys(*jax.random.split(jax.random.PRNGKey(seed), 3))


def checkpointer(config: experiment.ExperimentConfig) -> checkpointing.RunCheckpointer:
  return checkpointing.RunCheckpointer(os.path.join(config.workdir, workdir_lib.CHECKPOINTS))


def initial_counts(restored: Optional[Mapping[str, float]],
                   config: experiment.ExperimentConfig) -> Dict[str, float]:
  """Every count at 0 (so CSV columns are stable from the first row), or the checkpoint's (one
  from before the evaluation schedule was counted gets its place: `evaluation_schedule`)."""
  counts = {**{key: 0 for key in workdir_lib.COUNT_KEYS}, **(restored or {})}
  if restored and workdir_lib.EVALUATION_DUE_FROM not in restored:
    counts[workdir_lib.EVALUATION_DUE_FROM] = evaluation_schedule.place_from_whole_evaluations(
        restored, config)
  return counts


def prepare_workdir(config: experiment.ExperimentConfig) -> bool:
  """Writes run.json on a fresh run, refuses other settings on resume; returns resuming."""
  return workdir_lib.check_or_write_settings(config.workdir, config.settings)


def make_learner(config: experiment.ExperimentConfig, parts, client,
                 counter: counting.Counter) -> Tuple[core.Learner, Optional[checkpointing.Restored]]:
  """The method's learner on the replay at `client`, restored from the newest checkpoint.

  Returns:
    The learner and what was restored (None for a fresh run); the caller restores its counts.
  """
  builder = parts.builder
  learner = builder.make_learner(keys(config.seed).learner, parts.networks,
                                 builder.make_dataset_iterator(client), client, counter)
  restored = checkpointer(config).restore(learner.save())
  if restored is not None:
    learner.restore(restored.learner_state)
    logging.info('Resumed from %s at %s.', config.workdir, restored.counts)
  return learner, restored


def save_checkpoint(run_checkpointer: checkpointing.RunCheckpointer, learner: core.Learner,
                    counts: Mapping[str, float], client) -> str:
  path = run_checkpointer.save(learner.save(), counts, client)
  logging.info('Checkpoint %s', path)
  return path


def make_actor(parts, key: jax.Array, client, variable_source: core.VariableSource):
  """A training actor: the behaviour policy, writing to replay through the builder's adder."""
  return parts.builder.make_actor(key, parts.behaviour_policy, parts.builder.make_adder(client),
                                  variable_source=variable_source)


class Evaluator:
  """The evaluation policy in its own environment and loop; redraws the curve after each run.

  An evaluation is `eval_episodes` episodes of one policy, logged at the counts it began at. In
  the local run nothing trains meanwhile; in a Ray run the actors and the learner go on, so the
  policy is fetched once per evaluation (`policy_stats.VariablesPerEvaluation`) and every row
  carries the counts read at the start (`_CountsAtStart`): otherwise the episodes of one
  evaluation play several policies, and those ending after the next multiple of eval_every are
  logged (and plotted) as part of the next evaluation.
  """

  def __init__(self, config: experiment.ExperimentConfig, parts,
               variable_source: core.VariableSource, counter: counting.Counter, logger=None):
    self._config, self._counter = config, counter
    self._variables = policy_stats.VariablesPerEvaluation(variable_source)
    # With σ mean/min/max of the evaluated policy on each row (agents.policy_stats).
    actor, observers = policy_stats.make_evaluator(parts, keys(config.seed).evaluator,
                                                   self._variables)
    environment = environments.make_environment(config.task, config.seed + EVAL_SEED_OFFSET)
    self._logger = _CountsAtStart(logger or config.logger('evaluator'))
    self._loop = EnvironmentLoop(
        environment, actor, counter=counting.Counter(counter, EVALUATOR_COUNTS, time_delta=0.),
        logger=self._logger, observers=observers)

  def evaluate(self) -> Dict[str, float]:
    """An evaluation (`eval_episodes` episodes) at the run's counts now.

    Returns:
      The run's counts it began at, which label its rows.
    Raises:
      Terminated: on a SIGTERM, after the episodes that had finished were logged.
    """
    self._variables.new_evaluation()
    began = self._counter.get_counts()
    self._logger.start(began)
    run_loop(self._loop, num_episodes=self._config.eval_episodes)
    plots.plot_learning_curve(workdir_lib.log_csv(self._config.workdir, 'evaluator'),
                              os.path.join(self._config.workdir, workdir_lib.LEARNING_CURVE),
                              self._config.title)
    return began


class _CountsAtStart(loggers.Logger):
  """Writes each row with the counts given to `start` (as its evaluation began) in place of the
  run's counts at the episode's end; the evaluator's own counts (episodes, steps) stay the row's."""

  def __init__(self, logger: loggers.Logger):
    self._logger, self._at_start = logger, {}

  def start(self, counts: Mapping[str, float]) -> None:
    self._at_start = {key: value for key, value in counts.items()
                      if not key.startswith(EVALUATOR_COUNTS + '_')}

  def write(self, data: loggers.LoggingData) -> None:
    self._logger.write({**data, **self._at_start})

  def close(self) -> None:
    self._logger.close()


class CheckpointTimer:
  """Due every `checkpoint_every_minutes` of wall-clock time."""

  def __init__(self, config: experiment.ExperimentConfig):
    self._period = 60 * config.checkpoint_every_minutes
    self._last = time.time()

  def due(self) -> bool:
    return time.time() - self._last > self._period

  def reset(self) -> None:
    self._last = time.time()


class WallClock:
  """Adds the wall-clock time since the last tick to the count `workdir.WALLCLOCK`.

  Being a count, it is checkpointed with the others and sums over resumed launches, and every log
  row written after a tick carries it. `increment(seconds)` adds to the run's counter.
  """

  def __init__(self, increment):
    self._increment, self._last = increment, time.time()

  def tick(self) -> None:
    now = time.time()
    self._increment(now - self._last)
    self._last = now


class Progress:
  """The terminal progress bar: actor steps of the budget, the latest return and SGD steps."""

  def __init__(self, config: experiment.ExperimentConfig, initial_steps: int = 0):
    self._bar = tqdm.tqdm(total=config.num_steps, initial=initial_steps, unit='step',
                          smoothing=0.1, dynamic_ncols=True, disable=not config.progress)

  @property
  def enabled(self) -> bool:
    return not self._bar.disable

  def update(self, counts: Mapping[str, float], episode_return: Optional[float] = None) -> None:
    if self._bar.disable:
      return
    self._bar.n = min(int(counts.get('actor_steps', self._bar.n)), self._bar.total)
    text = f'sgd {int(counts.get("learner_steps", 0))}'
    if episode_return is not None:
      text = f'return {episode_return:.1f} {text}'
    self._bar.set_postfix_str(text, refresh=False)
    self._bar.refresh()

  def evaluation(self, steps: int, episode_return: float) -> None:
    if not self._bar.disable:
      self._bar.write(f'evaluation at {steps} steps: return {episode_return:.1f}')

  def close(self) -> None:
    self._bar.close()


class Terminated(KeyboardInterrupt):
  """A SIGTERM (a scheduler's pre-emption, `kill`): a run stops as on Ctrl-C, with a checkpoint."""


def run_loop(loop: EnvironmentLoop, **run_kwargs) -> None:
  """`loop.run(**run_kwargs)`, raising Terminated if a SIGTERM cut it short.

  While it runs the loop takes SIGTERM for itself and just returns early
  (`agents.acme_compat.runtime_terminator`), as if its steps or episodes were done.
  """
  with acme_compat.termination_watch() as terminated:
    loop.run(**run_kwargs)
  if terminated.is_set():
    raise Terminated('SIGTERM')


@contextlib.contextmanager
def sigterm_raises_terminated() -> Iterator[None]:
  """Outside Acme's loops, SIGTERM raises Terminated in the main thread; restored on exit."""
  if threading.current_thread() is not threading.main_thread():
    yield  # Python installs signal handlers from the main thread only.
    return

  def handler(signum, frame):
    del signum, frame
    raise Terminated('SIGTERM')

  previous = signal.signal(signal.SIGTERM, handler)
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def final_checkpoint(checkpoint, progress: Progress) -> Iterator[None]:
  """Around a run's main loop: the last checkpoint when it ends, or on Ctrl-C or SIGTERM (then
  re-raised as KeyboardInterrupt, `Terminated` for SIGTERM).

  Any other error (e.g. `agents.wpo.NonFiniteLossError`) writes none: the last good one stays.
  `checkpoint(interrupted)` writes it (and ticks the wall clock) and returns its path;
  `interrupted`: after a stop, which then prints that path: the launchers' own message cannot say
  whether a stop came before the main loop (nothing to checkpoint) or inside it.
  Code inside runs Acme's `EnvironmentLoop`s with `run_loop`, which raises on their SIGTERM.
  """
  try:
    with sigterm_raises_terminated():
      yield
  except KeyboardInterrupt:
    progress.close()
    print(f'Checkpoint written: {checkpoint(True)}', flush=True)
    raise
  except BaseException:
    progress.close()
    raise
  progress.close()
  checkpoint(False)


def record_video(config: experiment.ExperimentConfig, parts,
                 variable_source: core.VariableSource) -> None:
  """An MP4 of one episode of the evaluation policy, or a line saying why there is none."""
  ok, message = video.renderer_status()
  environment = environments.make_environment(config.task, config.seed + VIDEO_SEED_OFFSET)
  if ok and not hasattr(environment, 'physics'):
    ok, message = False, f'{config.task} has no single MuJoCo physics to render.'
  if not ok:
    print(f'No evaluation video: {message}')
    return
  policy = jax.jit(parts.evaluation_policy)
  params = variable_source.get_variables(['policy'])[0]
  key = jax.random.PRNGKey(0)
  path = os.path.join(config.workdir, workdir_lib.EVALUATION_VIDEO)
  frames = video.record_episode(
      environment, lambda observation: jax.device_get(policy(params, key, observation[None]))[0],
      path)
  print(f'Evaluation video: {path} ({frames} frames)')
