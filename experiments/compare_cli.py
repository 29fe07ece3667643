"""The flags and main of `python -m experiments.compare` (console script `wpo-compare`).

Imported by `experiments/compare.py` after the process set-up; see that module for usage.
"""

import dataclasses
import functools
import json
import os
import sys
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from absl import flags

from agents import atomic_files
from agents import environments
from agents import methods
from agents import wpo
from experiments import compare_presets
from experiments import policy_flags
from runner import experiment
from runner import local
from runner import method_variants
from runner import report
from runner import results_dir as results_dir_lib
from runner import workdir as workdir_lib


_PRESET = flags.DEFINE_enum('preset', 'cpu', sorted(compare_presets.PRESETS),
                            'Tasks, methods, seeds, budget and settings; flags below override.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory; re-use it to resume.')
_TASKS = flags.DEFINE_list('tasks', None, 'Control Suite tasks, domain:task, comma-separated.')
_METHODS = flags.DEFINE_string(
    'methods', None, f'Methods, comma-separated, of {methods.METHODS}; wpo and mpo take '
    'WPOConfig overrides: wpo[kl_weight_stddev=5,kl_mode=lagrange] (runner/method_variants.py).')
_SEEDS = flags.DEFINE_list('seeds', None, 'Seeds, comma-separated non-negative integers.')
_NUM_STEPS = flags.DEFINE_integer('num_steps', None, 'Environment steps per run.')
_EVAL_EVERY = flags.DEFINE_integer(
    'eval_every', None, 'Environment steps between evaluations; each comes at the first episode '
    'end past a multiple of it (Control Suite episodes: 1000 steps).')
_EVAL_EPISODES = flags.DEFINE_integer('eval_episodes', None,
                                      'Episodes per evaluation (mean action).')
_HIDDEN = flags.DEFINE_list('hidden_sizes', None,
                            'Hidden-layer sizes of every policy and critic, e.g. 256,256,256.')
_BATCH = flags.DEFINE_integer('batch_size', None, 'Transitions per SGD step, every method.')
_SAMPLES_PER_INSERT = flags.DEFINE_float(
    'samples_per_insert', None, 'Transitions sampled per transition inserted, every method: '
    'samples_per_insert / batch_size SGD steps per environment step.')
_CHECKPOINT_MINUTES = flags.DEFINE_float('checkpoint_every_minutes', 5.0,
                                         'Wall-clock minutes between checkpoints of a run.')
_PROGRESS = flags.DEFINE_bool('progress', False, 'Show a progress bar per run.')
_RESULTS_DIR = flags.DEFINE_string(
    'results_dir', None, 'Optional directory to commit (`runner/results_dir.py`): after every '
    'run, the finished runs\' settings, evaluator logs, learning curves and DONE markers and the '
    'reports are copied there (no checkpoints); finished runs found there and missing from '
    '--workdir are copied into it first, so a fresh workdir resumes the committed comparison.')
_REPORT_ONLY = flags.DEFINE_bool(
    'report_only', False, 'Only rebuild results.csv, results.md and plots/ from the runs in '
    '--workdir (finished or not), with the preset and flags that made them; trains nothing.')


class UsageError(ValueError):
  """Bad command-line input, detected before any work starts."""


class Run(NamedTuple):
  """One (method, task, seed) and the directory it lives in."""
  method: str
  task: str
  seed: int
  directory: str


@dataclasses.dataclass(frozen=True)
class Plan:
  """Every run to do, with the preset (flags applied) and the launch settings they share."""
  workdir: str
  preset: compare_presets.Preset
  runs: Tuple[Run, ...]
  checkpoint_every_minutes: float
  progress: bool
  results_dir: Optional[str] = None


def _ints(flag, values: Sequence[str]) -> Tuple[int, ...]:
  """A list flag's values as integers (their range is checked where the value is used)."""
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise UsageError(f'--{flag.name}={",".join(values)}: expected integers.') from None


def _non_empty_unique(flag, values: Sequence[Any]) -> None:
  """A list flag names something, and nothing twice (a repeat would train one run twice)."""
  if not values:
    raise UsageError(f'--{flag.name} is empty.')
  repeated = sorted({str(v) for v in values if list(values).count(v) > 1})
  if repeated:
    raise UsageError(f'--{flag.name} lists {", ".join(repeated)} more than once.')


def preset_from_flags() -> compare_presets.Preset:
  """The chosen preset with every explicitly given flag in place of its value."""
  preset = compare_presets.PRESETS[_PRESET.value]
  changes: Dict[str, Any] = {}
  if _TASKS.present:
    changes['tasks'] = tuple(_TASKS.value or ())
  if _METHODS.present:
    try:
      changes['methods'] = method_variants.canonical_names(_METHODS.value or '')
    except ValueError as error:
      raise UsageError(f'--methods: {error}') from None
  if _SEEDS.present:
    changes['seeds'] = _ints(_SEEDS, _SEEDS.value or ())
  for flag in (_NUM_STEPS, _EVAL_EVERY, _EVAL_EPISODES):
    if flag.present:
      changes[flag.name] = flag.value
  shared: Dict[str, Any] = {}
  if _HIDDEN.present:
    shared['hidden_sizes'] = _ints(_HIDDEN, _HIDDEN.value or ())
  if _BATCH.present:
    shared['batch_size'] = _BATCH.value
  if _SAMPLES_PER_INSERT.present:
    shared['samples_per_insert'] = _SAMPLES_PER_INSERT.value
  if shared:
    try:
      changes['settings'] = dataclasses.replace(preset.settings, **shared)
    except ValueError as error:  # 'batch_size=0 is invalid: ...': the flag has the field's name.
      raise UsageError(f'--{error}') from None
  try:
    changes['wpo_config'] = policy_flags.apply(preset.wpo_config)
  except ValueError as error:
    raise UsageError(str(error)) from None
  return dataclasses.replace(preset, **changes)


def _check_names(flag, names: Sequence[str], validate) -> None:
  """Each name passes `validate` (which raises ValueError naming the valid values)."""
  _non_empty_unique(flag, names)
  for name in names:
    try:
      validate(name)
    except ValueError as error:
      raise UsageError(f'--{flag.name}: {error}') from None


def validate_preset(preset: compare_presets.Preset) -> None:
  """Checks names and numbers; the messages name the flag and the valid values."""
  _check_names(_TASKS, preset.tasks, environments.validate_task_name)
  _check_names(_METHODS, preset.methods,
               lambda m: method_variants.resolve(m, preset.settings, preset.wpo_config))
  _non_empty_unique(_SEEDS, preset.seeds)
  if min(preset.seeds) < 0:  # numpy's generators (environments, replay) refuse negative seeds.
    raise UsageError(f'--seeds={",".join(map(str, preset.seeds))} is invalid: seeds must be '
                     'non-negative integers.')
  for flag, value in ((_NUM_STEPS, preset.num_steps), (_EVAL_EVERY, preset.eval_every),
                      (_EVAL_EPISODES, preset.eval_episodes)):
    if value < 1:
      raise UsageError(f'--{flag.name}={value} is invalid: it must be >= 1.')


def run_settings(preset: compare_presets.Preset, method: str, task: str,
                 seed: int) -> Dict[str, Any]:
  """What a run's results depend on, apart from its budget: its run.json, compared on resume.
  WPO's own config only matters to WPO and MPO; a variant's overrides are in its settings."""
  shared, wpo_config = method_variants.resolve(method, preset.settings, preset.wpo_config)
  if method_variants.base_method(method) not in method_variants.CONFIGURED_METHODS:
    wpo_config = None
  return workdir_lib.run_settings(method, task, seed, preset.eval_every, preset.eval_episodes,
                                  wpo_config=wpo_config, shared_settings=shared)


def _check_existing(run: Run, settings: Dict[str, Any]) -> None:
  """A run directory from an earlier call must have been made with the same settings."""
  changed = workdir_lib.changed_settings(run.directory, settings)
  if changed:
    raise UsageError(f'{run.directory} holds a run with different settings ({changed}); use a '
                     'new --workdir, or the preset and flags that made it.')


def make_plan() -> Plan:
  """Validates every flag and existing run; creates nothing. Raises UsageError."""
  if not _WORKDIR.value:
    raise UsageError('--workdir is required: the directory for runs, results and plots '
                     '(re-use it to resume).')
  preset = preset_from_flags()
  validate_preset(preset)
  if _CHECKPOINT_MINUTES.value <= 0:
    raise UsageError('--checkpoint_every_minutes must be > 0.')
  workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UsageError(f'--workdir={workdir} exists and is not a directory.')
  # Seeds outermost: a comparison stopped early still has every method on the first seeds.
  runs = tuple(Run(m, t, s, report.run_directory(workdir, t, method_variants.directory_name(m), s))
               for s in preset.seeds for t in preset.tasks for m in preset.methods)
  for run in runs:
    _check_existing(run, run_settings(preset, run.method, run.task, run.seed))
  results_dir = _results_dir(workdir, preset, runs)
  return Plan(workdir, preset, runs, _CHECKPOINT_MINUTES.value, _PROGRESS.value, results_dir)


def _results_dir(workdir: str, preset: compare_presets.Preset,
                 runs: Sequence[Run]) -> Optional[str]:
  """--results_dir, checked against the plan and the workdir; None without the flag."""
  if not _RESULTS_DIR.value:
    return None
  results_dir = os.path.abspath(os.path.expanduser(_RESULTS_DIR.value))
  settings = {run.directory: run_settings(preset, run.method, run.task, run.seed) for run in runs}
  try:
    results_dir_lib.check(results_dir, workdir, settings, preset.num_steps)
  except ValueError as error:
    raise UsageError(str(error)) from None
  return results_dir


def make_experiment(plan: Plan, run: Run) -> experiment.ExperimentConfig:
  """One run of the plan, as the runners take it."""
  preset = plan.preset
  shared, wpo_config = method_variants.resolve(run.method, preset.settings, preset.wpo_config)
  return experiment.ExperimentConfig(
      make_parts=functools.partial(methods.make_agent_parts,
                                   method_variants.base_method(run.method), shared, wpo_config),
      task=run.task, seed=run.seed, workdir=run.directory, num_steps=preset.num_steps,
      eval_every=preset.eval_every, eval_episodes=preset.eval_episodes,
      settings=run_settings(preset, run.method, run.task, run.seed),
      title=f'{run.method} on {run.task}, seed {run.seed}',
      checkpoint_every_minutes=plan.checkpoint_every_minutes, progress=plan.progress,
      video=False)


def train_run(plan: Plan, run: Run) -> Dict[str, Any]:
  """Trains (or resumes) one run to the plan's budget, then writes its DONE marker."""
  start = time.time()
  counts = local.run(make_experiment(plan, run))
  counts.pop('workdir', None)
  done = {'num_steps': plan.preset.num_steps, 'session_seconds': round(time.time() - start, 1),
          'counts': counts}
  # Written only after the run returned (its final checkpoint is committed), and atomically, so
  # a DONE marker always means a complete run.
  atomic_files.atomic_write(os.path.join(run.directory, workdir_lib.DONE),
                            json.dumps(done, indent=1, default=float).encode())
  return done


def _write_reports(plan: Plan) -> None:
  """Rebuilds the workdir's reports, and copies them and its finished runs to --results_dir."""
  report.write_reports(plan.workdir, method_variants.report_order(plan.preset.methods),
                       plan.preset.num_steps)
  if plan.results_dir:
    for run in results_dir_lib.export_finished(plan.workdir, plan.results_dir):
      print(f'Copied {run} to {plan.results_dir}', flush=True)


def run_all(plan: Plan) -> List[Tuple[Run, str]]:
  """Every run of the plan, skipping finished ones; reports rebuilt after each. Returns failures."""
  failures = []
  for index, run in enumerate(plan.runs, 1):
    name = f'[{index}/{len(plan.runs)}] {run.method} on {run.task}, seed {run.seed}'
    done_at = workdir_lib.finished_steps(run.directory)
    if done_at is not None and done_at >= plan.preset.num_steps:
      print(f'{name}: skipped, finished earlier ({done_at} steps)', flush=True)
      continue
    print(f'{name}: training to {plan.preset.num_steps} steps in {run.directory}', flush=True)
    try:
      done = train_run(plan, run)
    except wpo.NonFiniteLossError as error:
      # One diverging run should not cost the rest of the comparison; it resumes next time.
      print(f'{name}: failed: {error}', flush=True)
      failures.append((run, str(error)))
    else:
      print(f'{name}: finished in {done["session_seconds"]} s', flush=True)
    _write_reports(plan)
  return failures


def _adopt(plan: Plan) -> None:
  """Copies --results_dir's finished runs that the workdir lacks into it."""
  if plan.results_dir and os.path.isdir(plan.results_dir):
    adopted = results_dir_lib.adopt_finished(plan.results_dir, plan.workdir)
    if adopted:
      print(f'{len(adopted)} finished runs copied from {plan.results_dir}', flush=True)


def main(argv):
  if len(argv) > 1:
    sys.exit(f'error: unexpected arguments {argv[1:]}; every input is a --flag.')
  try:
    plan = make_plan()
  except UsageError as error:
    sys.exit(f'error: {error}')
  if _REPORT_ONLY.value:
    if not os.path.isdir(plan.workdir):
      if not (plan.results_dir and os.path.isdir(plan.results_dir)):
        sys.exit(f'error: --report_only: {plan.workdir} is not a comparison workdir, and no '
                 '--results_dir names one to start it from.')
      os.makedirs(plan.workdir)
    _adopt(plan)
    _write_reports(plan)
    print(f'Results: {os.path.join(plan.workdir, "results.md")}, results.csv, plots/')
    return
  os.makedirs(plan.workdir, exist_ok=True)
  _adopt(plan)
  try:
    failures = run_all(plan)
  except KeyboardInterrupt:
    # The current run printed "Checkpoint written: <path>" if the stop came after its start-up.
    sys.exit(f'Interrupted; re-run with --workdir={plan.workdir} to resume (the current run from '
             'its last checkpoint).')
  _write_reports(plan)
  print(f'Results: {os.path.join(plan.workdir, "results.md")}, results.csv, plots/')
  if failures:
    sys.exit('error: runs failed (re-run to resume them from their last checkpoint):\n' +
             '\n'.join(f'  {r.method} on {r.task}, seed {r.seed}: {e}' for r, e in failures))

