"""Tables and plots of a comparison workdir (`experiments/compare.py`), rebuilt from its run logs.

A comparison workdir holds one directory per run, `runs/<task>/<method>/seed_<s>/`, each with a
`run.json` (its method, task and seed: the source of truth, not the directory names) and the
evaluator's Acme CSV `logs/evaluator/logs.csv`. `write_reports(workdir)` reads every run found
there, finished or not, and writes

  results.csv        one row per evaluation point per run: method, task, seed, env_steps,
                     eval_return (mean over that evaluation's episodes), wallclock_seconds (the
                     run's wall-clock time when that evaluation started; empty in logs without it);
  results.md         per task × method, final return and normalised area under the curve, each as
                     mean ± std over seeds (for 100k-step comparisons, with the published returns
                     of `runner.published` beside the final ones), the wall-clock per run, each
                     pair of methods head to head, and where a method ends below half the best;
  plots/<task>.png   every method's curve: mean over seeds, min–max band across seeds; below,
                     the policy σ of the methods that log it (WPO, MPO): mean over seeds of
                     the evaluation's mean σ, band from the least to the largest σ.

Everything is recomputed from the logs each time, so the outputs are complete however many
sessions produced the runs; each file is replaced atomically.
"""

import csv
import glob
import io
import os
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from agents import atomic_files
from runner import plots
from runner import published
from runner import workdir as workdir_lib

RESULTS_COLUMNS = ('method', 'task', 'seed', 'env_steps', 'eval_return', workdir_lib.WALLCLOCK)
RESULTS_CSV, RESULTS_MD, PLOTS = 'results.csv', 'results.md', 'plots'


class RunCurve(NamedTuple):
  """One run's evaluations, sorted by step: mean return and wall-clock (None if unlogged)."""
  method: str
  task: str
  seed: int
  steps: List[float]
  returns: List[float]
  wallclock: List[Optional[float]]
  # σ of the evaluated policy per evaluation (plots.read_stddev); empty where not logged.
  stddev: plots.Curve = plots.Curve([], [], [], [], [])


def run_directory(workdir: str, task: str, method: str, seed: int) -> str:
  """Where a run lives. ':' is replaced because it is not portable in file names."""
  return os.path.join(workdir, 'runs', task_slug(task), method, f'seed_{seed}')


def run_directories(workdir: str) -> List[str]:
  """Every run directory under `workdir` (a comparison workdir or a results directory)."""
  return glob.glob(os.path.join(workdir, 'runs', '*', '*', 'seed_*'))  # run_directory's layout.


def task_slug(task: str) -> str:
  """'walker:walk' -> 'walker-walk' (no task name contains '-', so this is one-to-one)."""
  return task.replace(':', '-')


def read_run(directory: str) -> Optional[RunCurve]:
  """The curve of the run in `directory`, or None if it has no settings or no evaluation yet."""
  try:
    settings = workdir_lib.read_settings(directory)
  except (OSError, ValueError):
    return None
  if settings is None:
    return None
  path = workdir_lib.log_csv(directory, 'evaluator')
  curve = plots.aggregate(plots.read_returns(path))
  if not curve.steps:
    return None
  # Every episode of one evaluation carries the same wall-clock count.
  clock = plots.aggregate(plots.read_returns(path, return_column=workdir_lib.WALLCLOCK))
  clock_at = dict(zip(clock.steps, clock.maximums))
  return RunCurve(settings['method'], settings['task'], int(settings['seed']), curve.steps,
                  curve.means, [clock_at.get(step) for step in curve.steps],
                  plots.read_stddev(path))


def read_runs(workdir: str) -> List[RunCurve]:
  """Every run under `workdir/runs` with at least one evaluation, by task, method, seed."""
  found = (read_run(d) for d in run_directories(workdir))
  return sorted((r for r in found if r is not None), key=lambda r: (r.task, r.method, r.seed))


def normalised_auc(steps: Sequence[float], returns: Sequence[float]) -> float:
  """Trapezoid area under return vs steps divided by the step range: a mean return over training.

  A single evaluation has no range; its return is the answer.
  """
  if len(steps) < 2:
    return float(returns[0])
  steps, returns = np.asarray(steps, float), np.asarray(returns, float)
  area = np.sum(np.diff(steps) * (returns[1:] + returns[:-1]) / 2)
  return float(area / (steps[-1] - steps[0]))


def results_csv(runs: Iterable[RunCurve]) -> str:
  """The text of results.csv."""
  text = io.StringIO()
  writer = csv.writer(text, lineterminator='\n')
  writer.writerow(RESULTS_COLUMNS)
  for run in runs:
    for step, value, clock in zip(run.steps, run.returns, run.wallclock):
      writer.writerow([run.method, run.task, run.seed, int(step), f'{value:.6g}',
                       '' if clock is None else f'{clock:.1f}'])
  return text.getvalue()


def _mean_std(values: Sequence[float]) -> str:
  """'mean ± std (n=k)', std over seeds with ddof=1; one seed has no spread."""
  if len(values) == 1:
    return f'{values[0]:.1f} (n=1)'
  return f'{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f} (n={len(values)})'


def _by_task_and_method(runs: Sequence[RunCurve]) -> Dict[Tuple[str, str], List[RunCurve]]:
  groups: Dict[Tuple[str, str], List[RunCurve]] = {}
  for run in runs:
    groups.setdefault((run.task, run.method), []).append(run)
  return groups


def _table(groups, tasks, methods, cell, side_columns=()) -> List[str]:
  """Markdown rows: one per task, one column per method, each cell `cell(runs of that pair)`,
  then one column per (title, cell of the task) in `side_columns`."""
  titles = list(methods) + [title for title, _ in side_columns]
  lines = ['| task | ' + ' | '.join(titles) + ' |', '|---' * (len(titles) + 1) + '|']
  for task in tasks:
    cells = [cell(groups[task, m]) if (task, m) in groups else '–' for m in methods]
    cells += [side(task) for _, side in side_columns]
    lines.append(f'| {task} | ' + ' | '.join(cells) + ' |')
  return lines


def _published_columns(tasks: Sequence[str], budget: Optional[int]):
  """The side columns of published returns, where the comparison ran to their budget."""
  if budget != published.AT_STEPS or not any(t in published.ANCHORS for t in tasks):
    return (), []

  def sac(task):
    if task not in published.ANCHORS:
      return '–'
    low, high = published.ANCHORS[task].sac_range()
    return f'{low:.0f}–{high:.0f}'

  def best(task):
    return f'≈ {published.ANCHORS[task].best:.0f}' if task in published.ANCHORS else '–'

  note = ['', f'Published, at {published.AT_STEPS} environment steps with other settings '
          '(context, not runs of ours): "SAC, published" is the range over '
          + '; '.join(published.SAC_SOURCES) + f'; "best, published" is {published.BEST_SOURCE}.']
  return (('SAC, published', sac), ('best, published', best)), note


def _finals_by_seed(runs: Sequence[RunCurve]) -> Dict[Tuple[str, str], Dict[int, float]]:
  """(task, method) -> {seed: final return}."""
  finals: Dict[Tuple[str, str], Dict[int, float]] = {}
  for run in runs:
    finals.setdefault((run.task, run.method), {})[run.seed] = run.returns[-1]
  return finals


def head_to_head(runs: Sequence[RunCurve], methods: Sequence[str]) -> List[str]:
  """For each pair of methods (a, b), a listed first: the tasks where a's mean final return is at
  least b's, each mean over the seeds both have run (so a missing run skews no pair)."""
  finals = _finals_by_seed(runs)
  tasks = sorted({r.task for r in runs})
  lines = []
  for i, first in enumerate(methods):
    for second in methods[i + 1:]:
      ahead, compared, pairs = [], 0, 0
      for task in tasks:
        a, b = finals.get((task, first), {}), finals.get((task, second), {})
        seeds = sorted(set(a) & set(b))
        if not seeds:
          continue
        compared, pairs = compared + 1, pairs + len(seeds)
        if np.mean([a[s] for s in seeds]) >= np.mean([b[s] for s in seeds]):
          ahead.append(task)
      if compared:
        lines.append(f'- {first} ≥ {second} on {len(ahead)} of {compared} tasks '
                     f'({", ".join(ahead) or "none"}); {pairs} seed pairs.')
  return lines


def below_half_of_the_best(runs: Sequence[RunCurve], methods: Sequence[str]) -> List[str]:
  """Each (task, method) whose mean final return (over its seeds) is below half the task's best."""
  finals = _finals_by_seed(runs)
  lines = []
  for task in sorted({r.task for r in runs}):
    means = {m: float(np.mean(list(finals[task, m].values())))
             for m in methods if (task, m) in finals}
    leader = max(means, key=means.get)
    lines += [f'- {task}: {m} {means[m]:.1f} against {leader}\'s {means[leader]:.1f}.'
              for m in methods if m in means and means[m] < 0.5 * means[leader]]
  return lines


def _wallclock(runs: Sequence[RunCurve]) -> str:
  """Mean over seeds of the run's wall-clock at its last evaluation, in seconds."""
  clocks = [r.wallclock[-1] for r in runs if r.wallclock[-1] is not None]
  return f'{np.mean(clocks):.0f}' if clocks else '–'


def _step_range(runs: Sequence[RunCurve]) -> str:
  """The last evaluated step over seeds: one number, or 'min–max' where seeds differ."""
  low, high = int(min(r.steps[-1] for r in runs)), int(max(r.steps[-1] for r in runs))
  return str(low) if low == high else f'{low}–{high}'


def _methods(runs: Sequence[RunCurve], methods_order: Sequence[str]) -> List[str]:
  """The methods present, those in `methods_order` first and in that order (stable colours)."""
  present = {r.method for r in runs}
  return [m for m in methods_order if m in present] + sorted(present - set(methods_order))


def _reached(run: RunCurve, budget: Optional[int]) -> bool:
  """Whether `run` reached the budget (None: every run counts as finished). Runs still going
  would compare a return at 20k steps with one at 100k."""
  return budget is None or run.steps[-1] >= budget


def _over_finished(value: Callable[[RunCurve], float], budget: Optional[int]):
  """A table cell: `value(run)`'s mean ± std over the runs that reached `budget`; those still
  going are counted beside it, not averaged in."""
  def cell(runs: Sequence[RunCurve]) -> str:
    done = [value(r) for r in runs if _reached(r, budget)]
    going = len(runs) - len(done)
    parts = ([_mean_std(done)] if done else []) + ([f'{going} in progress'] if going else [])
    return ', '.join(parts)
  return cell


def results_markdown(runs: Sequence[RunCurve], methods_order: Sequence[str],
                     budget: Optional[int] = None) -> str:
  """The text of results.md: final return (beside published returns where `budget`, the
  comparison's environment steps, is theirs) and normalised AUC tables, each cell's steps and
  wall-clock, the methods head to head and those below half of the best. With a `budget`, the
  returns and comparisons are of the runs that reached it; None counts every run as finished."""
  groups = _by_task_and_method(runs)
  tasks = sorted({r.task for r in runs})
  methods = _methods(runs, methods_order)
  side_columns, side_note = _published_columns(tasks, budget)
  counted = ('n = seeds with at least one evaluation' if budget is None else
             'n = seeds that reached the budget; runs still going are counted beside them')
  lines = ['# Comparison results', '',
           'Evaluation return of the mean (deterministic) action, mean ± std over seeds '
           f'({counted}).', '',
           '## Final return', '', 'Return at each run\'s last evaluation.', '']
  lines += _table(groups, tasks, methods, _over_finished(lambda r: r.returns[-1], budget),
                  side_columns)
  lines += side_note
  lines += ['', '## Area under the curve', '',
            'Trapezoid area under return vs environment steps divided by the step range: the '
            'mean return over training.', '']
  lines += _table(groups, tasks, methods,
                  _over_finished(lambda r: normalised_auc(r.steps, r.returns), budget))
  lines += ['', '## Environment steps at the last evaluation', '',
            'Runs still in progress show fewer steps than the budget.', '']
  lines += _table(groups, tasks, methods, _step_range)
  lines += ['', '## Wall-clock per run', '',
            'Seconds of the run\'s wall-clock at its last evaluation, mean over seeds (the '
            'machine and its load are not recorded here).', '']
  lines += _table(groups, tasks, methods, _wallclock)
  finished = [r for r in runs if _reached(r, budget)]
  scope = 'runs that reached the budget' if budget is not None else 'every run'
  lines += ['', '## Head to head', '',
            f'Final return of {scope}; each pair on the seeds both have run.', '']
  lines += head_to_head(finished, methods) or ['- no pair of methods to compare yet']
  lines += ['', '## Below half of the best', '',
            f'Mean final return of {scope} under half of the best method\'s on the same task.',
            '']
  lines += below_half_of_the_best(finished, methods) or ['- none']
  return '\n'.join(lines) + '\n'


def seed_curve(runs: Sequence[RunCurve]) -> plots.Curve:
  """Mean over seeds at each step, with the min–max across seeds."""
  return plots.aggregate([(s, v) for run in runs for s, v in zip(run.steps, run.returns)])


def seed_stddev(runs: Sequence[RunCurve]) -> plots.Curve:
  """σ over seeds at each step: the mean of the runs' means, the extremes of their min and max."""
  def pooled(values):
    return plots.aggregate([(s, v) for run in runs for s, v in zip(run.stddev.steps,
                                                                   values(run.stddev))])
  return plots.stddev_curve(pooled(lambda c: c.means), pooled(lambda c: c.minimums),
                            pooled(lambda c: c.maximums))


def write_reports(workdir: str, methods_order: Sequence[str] = (),
                  budget: Optional[int] = None) -> List[RunCurve]:
  """Rewrites results.csv, results.md and plots/<task>.png from the runs under `workdir`;
  `budget`: the comparison's environment steps (see `results_markdown`)."""
  runs = read_runs(workdir)
  atomic_files.atomic_write(os.path.join(workdir, RESULTS_CSV), results_csv(runs).encode())
  atomic_files.atomic_write(os.path.join(workdir, RESULTS_MD),
                             results_markdown(runs, methods_order, budget).encode())
  groups = _by_task_and_method(runs)
  for task in sorted({r.task for r in runs}):
    present = [m for m in _methods(runs, methods_order) if (task, m) in groups]
    plots.plot_curves({m: seed_curve(groups[task, m]) for m in present},
                      os.path.join(workdir, PLOTS, f'{task_slug(task)}.png'),
                      f'{task} (mean over seeds, min–max band)',
                      stddevs={m: seed_stddev(groups[task, m]) for m in present})
  return runs
