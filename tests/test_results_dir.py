"""runner/results_dir.py: export a workdir's finished runs, adopt them into a fresh workdir."""

import json
import os
import re

import pytest

from runner import report
from runner import results_dir
from runner import workdir as workdir_lib


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)


def _read(path):
  with open(path) as f:
    return f.read()


def _make_run(workdir, task, method, seed, done_steps=None, checkpoint=True):
  """A run directory as the harness leaves it; DONE only where `done_steps` is given."""
  directory = report.run_directory(str(workdir), task, method, seed)
  _write(os.path.join(directory, workdir_lib.RUN_SETTINGS),
         json.dumps({'method': method, 'task': task, 'seed': seed}))
  _write(workdir_lib.log_csv(directory, 'evaluator'), f'actor_steps,episode_return\n0,{seed}\n')
  _write(workdir_lib.log_csv(directory, 'learner'), 'learner_steps\n1\n')
  _write(os.path.join(directory, workdir_lib.LEARNING_CURVE), f'png of {method} {seed}')
  if checkpoint:
    _write(os.path.join(directory, workdir_lib.CHECKPOINTS, 'ckpt-1', 'learner.msgpack'), 'x')
  if done_steps is not None:
    _write(os.path.join(directory, workdir_lib.DONE), json.dumps({'num_steps': done_steps}))
  return directory


def test_export_copies_finished_runs_and_reports_only(tmp_path):
  workdir, results = tmp_path / 'work', tmp_path / 'results'
  _make_run(workdir, 'cartpole:swingup', 'wpo', 0, done_steps=1000)
  _make_run(workdir, 'cartpole:swingup', 'sac', 0)  # Still training: not exported.
  _write(str(workdir / 'results.md'), '# report')
  _write(str(workdir / 'results.csv'), 'method\n')
  _write(str(workdir / 'plots' / 'cartpole-swingup.png'), 'plot')
  _write(str(results / 'README.md'), 'written by hand')

  assert results_dir.export_finished(str(workdir), str(results)) == [
      'runs/cartpole-swingup/wpo/seed_0']
  copy = results / 'runs' / 'cartpole-swingup' / 'wpo' / 'seed_0'
  assert sorted(os.listdir(copy)) == sorted(
      ['run.json', 'evaluator_logs.csv', 'learning_curve.png', 'DONE.json'])
  assert _read(copy / 'evaluator_logs.csv') == 'actor_steps,episode_return\n0,0\n'
  assert json.loads(_read(copy / 'DONE.json')) == {'num_steps': 1000}
  assert not (results / 'runs' / 'cartpole-swingup' / 'sac').exists()
  assert _read(results / 'results.md') == '# report'
  assert _read(results / 'plots' / 'cartpole-swingup.png') == 'plot'
  assert _read(results / 'README.md') == 'written by hand'
  # Unchanged runs are not copied again; a run finished since (or re-finished) is.
  assert results_dir.export_finished(str(workdir), str(results)) == []
  _make_run(workdir, 'cartpole:swingup', 'sac', 0, done_steps=1000)
  assert results_dir.export_finished(str(workdir), str(results)) == [
      'runs/cartpole-swingup/sac/seed_0']


def test_adopt_restores_what_the_report_reads(tmp_path):
  workdir, results, fresh = tmp_path / 'work', tmp_path / 'results', tmp_path / 'fresh'
  finished = _make_run(workdir, 'cartpole:swingup', 'wpo', 0, done_steps=1000)
  _make_run(workdir, 'walker:walk', 'wpo', 1, done_steps=1000)
  results_dir.export_finished(str(workdir), str(results))

  assert results_dir.adopt_finished(str(results), str(fresh)) == [
      'runs/cartpole-swingup/wpo/seed_0', 'runs/walker-walk/wpo/seed_1']
  adopted = report.run_directory(str(fresh), 'cartpole:swingup', 'wpo', 0)
  for name in (workdir_lib.RUN_SETTINGS, workdir_lib.DONE, workdir_lib.LEARNING_CURVE):
    assert _read(os.path.join(adopted, name)) == _read(os.path.join(finished, name))
  assert (_read(workdir_lib.log_csv(adopted, 'evaluator')) ==
          _read(workdir_lib.log_csv(finished, 'evaluator')))
  assert not os.path.exists(os.path.join(adopted, workdir_lib.CHECKPOINTS))
  # Runs already in the workdir are never written to.
  assert results_dir.adopt_finished(str(results), str(fresh)) == []


def test_conflicts_name_runs_the_two_directories_disagree_on(tmp_path):
  workdir, results = tmp_path / 'work', tmp_path / 'results'
  _make_run(workdir, 'cartpole:swingup', 'wpo', 0, done_steps=1000)
  _make_run(workdir, 'cartpole:swingup', 'wpo', 1, done_steps=1000)
  _make_run(workdir, 'cartpole:swingup', 'wpo', 2, done_steps=1000)
  results_dir.export_finished(str(workdir), str(results))
  assert results_dir.conflicts(str(results), str(workdir)) == {}
  os.remove(os.path.join(report.run_directory(str(workdir), 'cartpole:swingup', 'wpo', 1),
                         workdir_lib.DONE))
  _make_run(workdir, 'cartpole:swingup', 'wpo', 2, done_steps=2000)
  assert results_dir.conflicts(str(results), str(workdir)) == {
      'runs/cartpole-swingup/wpo/seed_1':
          'unfinished in the workdir, finished in the results directory',
      'runs/cartpole-swingup/wpo/seed_2': 'finished in both, with different DONE markers'}
  assert results_dir.conflicts(str(results), str(tmp_path / 'absent')) == {}


def test_check_names_what_a_results_directory_cannot_serve(tmp_path):
  workdir, results = str(tmp_path / 'work'), str(tmp_path / 'results')
  directory = _make_run(workdir, 'cartpole:swingup', 'wpo', 0, done_steps=1000)
  results_dir.export_finished(workdir, results)
  fresh = str(tmp_path / 'fresh')
  plan = {report.run_directory(fresh, 'cartpole:swingup', 'wpo', 0):
          {'method': 'wpo', 'task': 'cartpole:swingup', 'seed': 0}}
  results_dir.check(results, fresh, plan, num_steps=1000)  # Serves it: no error.
  for settings, steps, message in [
      ({'method': 'wpo', 'task': 'cartpole:swingup', 'seed': 3}, 1000,
       "holds a run with different settings (['seed'])"),
      (None, 2000, 'finished at 1000 steps, fewer than --num_steps=2000')]:
    run_plan = {d: settings or s for d, s in plan.items()}
    with pytest.raises(ValueError, match=re.escape(message)):
      results_dir.check(results, fresh, run_plan, num_steps=steps)
  with pytest.raises(ValueError, match='must differ from --workdir'):
    results_dir.check(results, results, {}, num_steps=1000)
  with pytest.raises(ValueError, match='exists and is not a directory'):
    results_dir.check(os.path.join(directory, 'run.json'), fresh, {}, num_steps=1000)
  os.remove(os.path.join(directory, workdir_lib.DONE))
  with pytest.raises(ValueError, match='runs/cartpole-swingup/wpo/seed_0: unfinished in the work'):
    results_dir.check(results, workdir, {}, num_steps=1000)


def test_finished_steps_reads_the_done_marker_or_none(tmp_path):
  directory = _make_run(tmp_path, 'cartpole:swingup', 'wpo', 0, done_steps=1000)
  assert workdir_lib.finished_steps(directory) == 1000
  assert workdir_lib.finished_steps(str(tmp_path)) is None
  _write(os.path.join(directory, workdir_lib.DONE), '{"num_steps": ')  # Torn: not finished.
  assert workdir_lib.finished_steps(directory) is None
