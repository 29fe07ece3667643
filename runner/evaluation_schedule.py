"""When a run evaluates, for both runners: the schedule of evaluation points, kept in the counts.

The points are 0 (the untrained policy), each multiple of `eval_every` and the budget. The count
`workdir.EVALUATION_DUE_FROM` is the schedule's place: one past the actor-step count the last
whole evaluation began at. It is checkpointed with the other counts, so a resume continues the
schedule exactly (`run_evaluations`).
"""

from typing import Callable, Mapping, Optional

import agents  # noqa: F401  (the hook that lets acme import; see agents/acme_compat.py)
from acme.utils import counting

from runner import experiment
from runner import workdir as workdir_lib


def evaluation_point(index: int, config: experiment.ExperimentConfig) -> int:
  """The actor-step count of the run's `index`-th evaluation point (from 0): the untrained
  policy's at 0, then each multiple of `eval_every`, the last at the budget."""
  return min(index * config.eval_every, config.num_steps)


def next_evaluation(counts: Mapping[str, float],
                    config: experiment.ExperimentConfig) -> Optional[int]:
  """The actor-step count at which the next evaluation is due, or None when all are done.

  It is the first evaluation point at or past `counts[EVALUATION_DUE_FROM]`: 0 on a fresh run.
  An evaluation that began at `actor_steps` s evaluated every point up to s (a late one — the
  local loop's episode that spanned a point, a Ray evaluator behind the actors — stands for the
  points it passed), so it moves the place to s + 1 (`run_evaluations`).
  """
  due_from = int(counts[workdir_lib.EVALUATION_DUE_FROM])
  if due_from > config.num_steps:
    return None
  return evaluation_point(-(-due_from // config.eval_every), config)


def run_evaluations(config: experiment.ExperimentConfig, counter: counting.Counter,
                    evaluate: Callable[[], Mapping[str, float]],
                    reach: Callable[[int], None],
                    after_each: Callable[[], None] = lambda: None) -> None:
  """Every evaluation the run has left, in order, each once the actors reach its point.

  Both runners' schedule, kept in the counts alone (`EVALUATION_DUE_FROM`), so that a resume
  continues it exactly. An evaluation that a stop cut short is dropped and played again whole at
  the restored counts: a Ray run's learner trained on while it played, so the checkpoint need not
  hold its policy. Taking its episodes back out of `evaluator_episodes` (the evaluator log's
  timeline column) lets `runner.plots` drop its rows, so every point of the curve is one whole
  evaluation of one policy. A point that training reached before a stop came is evaluated on
  resume, not skipped.

  Args:
    config: the run's cadences and budget.
    counter: the run's counter.
    evaluate: plays one evaluation and returns the counts it began at (`Evaluator.evaluate`).
    reach: returns once `actor_steps` is at least its argument: the local runner trains to it,
      a Ray evaluator waits for the actors.
    after_each: called after each evaluation (the local runner's periodic checkpoint).
  """
  cut_short = int(counter.get_counts()[workdir_lib.EVALUATOR_EPISODES]) % config.eval_episodes
  if cut_short:
    counter.increment(**{workdir_lib.EVALUATOR_EPISODES: -cut_short})
  while (point := next_evaluation(counter.get_counts(), config)) is not None:
    reach(point)
    began = evaluate()
    counter.increment(**{workdir_lib.EVALUATION_DUE_FROM: int(began['actor_steps']) + 1 - int(
        began[workdir_lib.EVALUATION_DUE_FROM])})
    after_each()


def place_from_whole_evaluations(restored: Mapping[str, float],
                                 config: experiment.ExperimentConfig) -> int:
  """The place for a checkpoint written before the schedule was counted, from its whole
  evaluations: the runners then evaluated at each point in turn, the j-th (from 0) at
  `evaluation_point(j)`."""
  finished = int(restored[workdir_lib.EVALUATOR_EPISODES]) // config.eval_episodes
  return evaluation_point(finished - 1, config) + 1 if finished else 0
