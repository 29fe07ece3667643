"""The single-process runner: one method, one task, one seed, every part in this process.

An in-process Reverb server, a training actor in Acme's `EnvironmentLoop` (through
`acme.agents.agent.Agent`, which interleaves learner steps at the samples-per-insert ratio), the
evaluator, logs, learning curve, checkpoints and resume, all from `runner.wiring`.
"""

from typing import Any, Dict

import agents  # noqa: F401  (the hook that lets acme import; see agents/acme_compat.py)
from acme import specs
from acme.agents import agent as acme_agent
from acme.environment_loop import EnvironmentLoop
from acme.utils import counting
from acme.utils import loggers
import reverb

from agents import environments
from agents import reverb_bind
from runner import evaluation_schedule
from runner import experiment
from runner import wiring
from runner import workdir as workdir_lib

LOOPBACK = '127.0.0.1'  # The in-process Reverb server's address.


class _ProgressLogger(loggers.Logger):
  """Forwards episode logs and shows each on the progress bar (training) or as a line (evaluation)."""

  def __init__(self, inner: loggers.Logger, progress: wiring.Progress, counter: counting.Counter,
               evaluation: bool):
    self._inner, self._progress, self._counter = inner, progress, counter
    self._evaluation = evaluation

  def write(self, data):
    self._inner.write(data)
    episode_return = float(data['episode_return'])
    if self._evaluation:
      self._progress.evaluation(int(data.get('actor_steps', 0)), episode_return)
    else:
      self._progress.update({**self._counter.get_counts(), **data}, episode_return)

  def close(self):
    self._inner.close()


def run(config: experiment.ExperimentConfig) -> Dict[str, Any]:
  """Trains until `config.num_steps` actor steps; resumes from `config.workdir`.

  Returns:
    The final counts with the workdir.

  Raises:
    workdir.SettingsMismatch: the workdir holds a run with other settings.
    wpo.NonFiniteLossError: the learner's loss became non-finite; the last checkpoint is kept.
    KeyboardInterrupt: on Ctrl-C or SIGTERM (`wiring.Terminated`), after writing a checkpoint
      if the stop came in the main loop (before it there is nothing to checkpoint).
  """
  # From the start on, not only in the main loop: a SIGTERM during start-up then stops the run
  # through the `finally`s, as a Ctrl-C does, instead of killing the process where it stands.
  with wiring.sigterm_raises_terminated():
    return _start_and_run(config)


def _start_and_run(config: experiment.ExperimentConfig) -> Dict[str, Any]:
  wiring.prepare_workdir(config)
  workdir_lib.announce_learner_device(config.workdir)
  environment = environments.make_environment(config.task, config.seed)
  spec = specs.make_environment_spec(environment)
  parts = config.parts(spec, single_process=True, learner_logs=True)
  checkpointer = wiring.checkpointer(config)
  # Reverb listens on loopback only where agents.reverb_bind's wrapper is preloaded (the entry
  # points see to it); the server reloads the newest replay checkpoint in the directory.
  server = reverb_bind.start_server(parts.builder.make_replay_tables(spec), LOOPBACK,
                                    checkpointer=checkpointer.replay_checkpointer())
  try:
    client = reverb.Client(f'{LOOPBACK}:{server.port}')
    return _run_with_replay(config, parts, client, checkpointer, environment)
  finally:
    server.stop()


def _run_with_replay(config, parts, client, checkpointer, environment) -> Dict[str, Any]:
  counter = counting.Counter()
  learner, restored = wiring.make_learner(config, parts, client,
                                          counting.Counter(counter, 'learner', time_delta=0.))
  counter.increment(**wiring.initial_counts(restored.counts if restored else None, config))

  replay_size = sum(int(t.current_size) for t in client.server_info().values())
  agent = acme_agent.Agent(
      wiring.make_actor(parts, wiring.keys(config.seed).actor, client, learner), learner,
      # A restored replay is already warm: learning continues at once.
      min_observations=max(0, parts.min_replay_size - replay_size),
      observations_per_step=parts.transitions_per_learner_step / parts.samples_per_insert)

  progress = wiring.Progress(config, int(counter.get_counts()['actor_steps']))
  train_loop = EnvironmentLoop(
      environment, agent, counter=counting.Counter(counter, 'actor', time_delta=0.),
      logger=_ProgressLogger(config.logger('actor'), progress, counter, evaluation=False))
  evaluator = wiring.Evaluator(
      config, parts, learner, counter,
      _ProgressLogger(config.logger('evaluator'), progress, counter, evaluation=True))
  clock = wiring.WallClock(lambda seconds: counter.increment(**{workdir_lib.WALLCLOCK: seconds}))
  timer = wiring.CheckpointTimer(config)

  def evaluate():
    clock.tick()  # Evaluation rows then carry the run's wall-clock time up to this evaluation.
    return evaluator.evaluate()

  def train_to(steps: int) -> None:
    played = int(counter.get_counts()['actor_steps'])
    if played < steps:  # Else a point training already reached (owed after a stop, or overshot).
      wiring.run_loop(train_loop, num_steps=steps - played)

  def checkpoint_if_due() -> None:
    if timer.due():
      checkpoint()

  def checkpoint(interrupted: bool = False) -> str:
    del interrupted  # The learner is in this process: the checkpoint is written either way.
    clock.tick()
    path = wiring.save_checkpoint(checkpointer, learner, counter.get_counts(), client)
    timer.reset()
    return path

  with wiring.final_checkpoint(checkpoint, progress):
    # Nothing trains during an evaluation: it plays at the counts training reached for its point.
    evaluation_schedule.run_evaluations(config, counter, evaluate, train_to,
                                        after_each=checkpoint_if_due)
  if config.video:
    wiring.record_video(config, parts, learner)
  return {**counter.get_counts(), 'workdir': config.workdir}
