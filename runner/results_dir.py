"""A comparison's results directory: the part of its workdir worth committing.

  <results_dir>/results.md, results.csv, plots/<task>.png    the reports (`runner.report`)
  <results_dir>/runs/<task>/<method>/seed_<s>/run.json        the run's settings
                                              evaluator_logs.csv  its evaluator's Acme CSV log
                                              learning_curve.png  its learning curve
                                              DONE.json           its DONE marker (counts, time)

No checkpoints, replay or other logs: a few hundred kB for a whole panel, so a long comparison
can be committed run by run and survive the machine it ran on. `export_finished` copies a
workdir's finished runs and reports there; `adopt_finished` copies a results directory's
finished runs into a workdir that lacks them, so that a fresh workdir resumes the comparison
where the committed results stop. Other files there (a README, analyses) are left alone.
"""

import glob
import os
from typing import Any, Dict, List, Mapping

from agents import atomic_files
from runner import report
from runner import workdir as workdir_lib

# (path in a workdir's run directory, path in the results directory's copy of it). The DONE
# marker is last: it is copied after the rest, so a copy with a DONE marker is complete.
RUN_FILES = (
    (workdir_lib.RUN_SETTINGS, 'run.json'),
    (workdir_lib.log_csv('', 'evaluator'), 'evaluator_logs.csv'),
    (workdir_lib.LEARNING_CURVE, 'learning_curve.png'),
    (workdir_lib.DONE, 'DONE.json'),
)
DONE_COPY = RUN_FILES[-1][1]


def _read(path: str) -> bytes:
  with open(path, 'rb') as f:
    return f.read()


def _copy_run(source: str, destination: str, to_results: bool) -> None:
  """Copies one run's files (those that exist; the DONE marker last), each atomically."""
  for in_workdir, in_results in RUN_FILES:
    source_path, destination_path = ((in_workdir, in_results) if to_results
                                     else (in_results, in_workdir))
    source_path = os.path.join(source, source_path)
    if os.path.exists(source_path):
      atomic_files.atomic_write(os.path.join(destination, destination_path), _read(source_path))


def _finished(directory: str, done_name: str) -> List[str]:
  """Run directories below `directory`/runs with a DONE marker, relative to `directory`."""
  return sorted(os.path.relpath(run, directory) for run in report.run_directories(directory)
                if os.path.exists(os.path.join(run, done_name)))


def finished_runs(results_dir: str) -> List[str]:
  """The results directory's finished runs, as 'runs/<task>/<method>/seed_<s>'."""
  return _finished(results_dir, DONE_COPY)


def adopt_finished(results_dir: str, workdir: str) -> List[str]:
  """Copies every finished run of `results_dir` that `workdir` does not hold into `workdir`.

  A run directory that exists in `workdir` is never written to: the caller checks that it does
  not conflict (`conflicts`). Returns the adopted runs ('runs/<task>/<method>/seed_<s>').
  """
  adopted = []
  for run in finished_runs(results_dir):
    if not os.path.exists(os.path.join(workdir, run)):
      _copy_run(os.path.join(results_dir, run), os.path.join(workdir, run), to_results=False)
      adopted.append(run)
  return adopted


def conflicts(results_dir: str, workdir: str) -> Dict[str, str]:
  """Runs that `results_dir` holds finished and `workdir` holds otherwise: {run: why}.

  Either the workdir's copy is unfinished (it would train on beside a finished one) or it
  finished with another DONE marker (another run under the same name); both need a person to
  choose which to keep.
  """
  found = {}
  for run in finished_runs(results_dir):
    in_workdir = os.path.join(workdir, run)
    if not os.path.exists(in_workdir):
      continue
    done = os.path.join(in_workdir, workdir_lib.DONE)
    if not os.path.exists(done):
      found[run] = 'unfinished in the workdir, finished in the results directory'
    elif _read(done) != _read(os.path.join(results_dir, run, DONE_COPY)):
      found[run] = 'finished in both, with different DONE markers'
  return found


def export_finished(workdir: str, results_dir: str) -> List[str]:
  """Copies `workdir`'s finished runs that `results_dir` lacks or holds older copies of, then
  its reports (results.md, results.csv and plots/*.png). Returns the runs copied."""
  exported = []
  for run in _finished(workdir, workdir_lib.DONE):
    destination = os.path.join(results_dir, run)
    done_copy = os.path.join(destination, DONE_COPY)
    if (os.path.exists(done_copy) and
        _read(done_copy) == _read(os.path.join(workdir, run, workdir_lib.DONE))):
      continue
    _copy_run(os.path.join(workdir, run), destination, to_results=True)
    exported.append(run)
  for name in (report.RESULTS_MD, report.RESULTS_CSV):
    if os.path.exists(os.path.join(workdir, name)):
      atomic_files.atomic_write(os.path.join(results_dir, name),
                                _read(os.path.join(workdir, name)))
  for plot in sorted(glob.glob(os.path.join(workdir, report.PLOTS, '*.png'))):
    atomic_files.atomic_write(os.path.join(results_dir, report.PLOTS, os.path.basename(plot)),
                              _read(plot))
  return exported


def check(results_dir: str, workdir: str, settings: Mapping[str, Dict[str, Any]],
          num_steps: int) -> None:
  """Raises ValueError, naming the run and the fix, where `results_dir` cannot serve a plan.

  Args:
    results_dir, workdir: the two directories (absolute paths).
    settings: {run directory in `workdir`: its run.json settings} for every run of the plan.
    num_steps: the plan's budget.
  """
  if os.path.exists(results_dir) and not os.path.isdir(results_dir):
    raise ValueError(f'--results_dir={results_dir} exists and is not a directory.')
  if results_dir == workdir:
    raise ValueError('--results_dir must differ from --workdir: it is a copy of its finished runs.')
  for directory, run_settings in settings.items():
    copy = os.path.join(results_dir, os.path.relpath(directory, workdir))
    done_at = workdir_lib.finished_steps(copy, DONE_COPY)
    if done_at is None:
      continue
    changed = workdir_lib.changed_settings(copy, run_settings)
    if changed:
      raise ValueError(f'{copy} holds a run with different settings ({changed}); use another '
                       '--results_dir, or the preset and flags that made it.')
    if done_at < num_steps:
      raise ValueError(f'{copy} finished at {done_at} steps, fewer than --num_steps={num_steps}, '
                       'and a results directory holds no checkpoints to extend it from: use the '
                       'workdir that made it, or its budget.')
  clashes = conflicts(results_dir, workdir)
  if clashes:
    raise ValueError('--results_dir and --workdir disagree about these runs; keep one copy of '
                     'each (move the other away): ' +
                     '; '.join(f'{run}: {why}' for run, why in sorted(clashes.items())))
