"""One experiment definition, consumed by the local runner and by the Ray runner alike.

In the spirit of Acme's `jax/experiments` ExperimentConfig (which dm-acme 0.4.0 does not ship): the
method comes in as a factory of `agents.methods.AgentParts` (builder, networks, policies, replay
ratio), and everything else a run needs — task, seed, workdir, budget, evaluation and checkpoint
cadence, loggers, what run.json records — is a field here. `runner.local.run(config)` and
`runner.distributed.run(config, cluster)` take the same object.
"""

import dataclasses
import os
from typing import Any, Callable, Dict

import agents  # noqa: F401  (the hook that lets acme import; see agents/acme_compat.py)
from acme import specs
from acme.utils import loggers

from agents import csv_logs
from agents import methods
from runner import workdir as workdir_lib

LoggerFactory = Callable[[], loggers.Logger]
# (environment spec, learner logger factory, single_process) -> the method's parts. With
# single_process, replay never blocks (`agents.methods.single_process_replay`): the runner's
# loop enforces the replay ratio instead.
PartsFactory = Callable[[specs.EnvironmentSpec, LoggerFactory, bool], methods.AgentParts]


def make_logger(workdir: str, label: str, time_delta: float = 0.0) -> loggers.Logger:
  """Acme CSV (logs/<label>/logs.csv, flushed every row) + TensorBoard, optionally throttled."""
  # Imported here: the TensorBoard writer pulls in TensorFlow's summary ops.
  from acme.utils.loggers import tf_summary  # pylint: disable=g-import-not-at-top
  logger = loggers.Dispatcher([
      # Acme's CSVLogger (made resumable) writes <workdir>/logs/<label>/logs.csv: `runner.workdir.log_csv`.
      csv_logs.ResumableCSVLogger(workdir, label=label, add_uid=False, flush_every=1),
      tf_summary.TFSummaryLogger(os.path.join(workdir, workdir_lib.TENSORBOARD), label=label),
  ], serialize_fn=loggers.to_numpy)
  logger = loggers.NoneFilter(logger)
  if time_delta > 0:
    logger = loggers.TimeFilter(logger, time_delta)
  return logger


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """Everything one run (one method, task and seed) is made of.

  Attributes:
    make_parts: the method (see `PartsFactory`), e.g. a partial of
      `agents.methods.make_agent_parts`. Sent to every Ray worker, so it must pickle.
    task: a name valid for `agents.environments.make_environment`.
    seed: seeds the environments, networks and acting.
    workdir: logs, checkpoints and plots go here (names: `runner.workdir`); it resumes.
    num_steps: the budget in actor (environment) steps.
    eval_every: actor steps between evaluations (plus one of the untrained policy).
    eval_episodes: episodes per evaluation, with the evaluation policy.
    settings: run.json's content (`runner.workdir.run_settings`), checked on resume.
    title: the learning curve's title.
    checkpoint_every_minutes: wall-clock minutes between checkpoints (also at the end, Ctrl-C).
    progress: a progress bar on the terminal.
    video: an MP4 of one evaluation episode at the end, where a headless renderer exists.
    make_logger: (workdir, label, time_delta) -> the Acme logger of `label`.
  """
  make_parts: PartsFactory
  task: str
  seed: int
  workdir: str
  num_steps: int
  eval_every: int
  eval_episodes: int
  settings: Dict[str, Any]
  title: str
  checkpoint_every_minutes: float = 5.0
  progress: bool = True
  video: bool = False
  make_logger: Callable[[str, str, float], loggers.Logger] = make_logger

  def logger(self, label: str, time_delta: float = 0.0) -> loggers.Logger:
    return self.make_logger(self.workdir, label, time_delta)

  def parts(self, spec: specs.EnvironmentSpec, single_process: bool,
            learner_logs: bool = False) -> methods.AgentParts:
    """The method's parts; `learner_logs` gives the learner its CSV logger (the learner's
    process only: other processes build parts for their actors)."""
    logger_fn = (lambda: self.logger('learner', 1.0)) if learner_logs else (lambda: None)
    return self.make_parts(spec, logger_fn, single_process)
