"""End-to-end tests of the local launcher: a real Control Suite task, Reverb server and checkpoints."""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, NamedTuple

import jax
import numpy as np
import pytest
import reverb

from runner import plots
from runner import report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Small networks and a low replay ratio keep a few thousand environment steps within seconds.
TINY = ['--preset=cpu', '--config=policy_layers=32,32', '--config=critic_layers=32,32',
        '--config=num_action_samples=4', '--config=batch_size=32',
        '--config=samples_per_insert=8', '--config=min_replay_size=200',
        '--config=variable_update_period=100', '--eval_episodes=1', '--progress=false',
        '--video=false']


@contextlib.contextmanager
def sigint_as_under_a_terminal() -> Iterator[None]:
  """Inside, SIGINT raises KeyboardInterrupt here, and a child started here gets it at its default.

  A shell without job control (`cmd &` in a script, `nohup`) starts its jobs with SIGINT ignored,
  which this process and every child inherit: a Ctrl-C test would then send a signal that nothing
  sees (measured: the distributed launcher ran its 40k steps to the end and exited 0). A Python
  handler here is reset to the default at exec, where SIG_IGN would stay.
  """
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)


def launch(workdir, *flags, wait=True, program=('-m', 'experiments.run_wpo')):
  command = [sys.executable, *program, '--env=cartpole:swingup', f'--workdir={workdir}', *TINY,
             *flags]
  if not wait:
    with sigint_as_under_a_terminal():
      return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def _rows(workdir, label):
  with open(os.path.join(workdir, 'logs', label, 'logs.csv')) as f:
    return list(csv.DictReader(f))


def _manifest(workdir):
  path = os.path.join(workdir, 'checkpoints', 'manifest.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _checkpointed_steps(workdir) -> int:
  manifest = _manifest(workdir)
  return manifest['counts']['actor_steps'] if manifest else 0


def _evaluations(workdir):
  """The evaluator's rows so far ([] before its log exists)."""
  if not os.path.exists(os.path.join(workdir, 'logs', 'evaluator', 'logs.csv')):
    return []
  return _rows(workdir, 'evaluator')


def _wait_until(process, condition, what, period=0.2):
  """Polls `condition()` while `process` runs; fails with its output if it exits, or after 300 s."""
  deadline = time.time() + 300
  while time.time() < deadline:
    if condition():
      return
    assert process.poll() is None, process.stdout.read()[-3000:]
    time.sleep(period)
  pytest.fail(f'{what} within 300 s')


def test_local_run_writes_logs_curve_and_checkpoint(tmp_path):
  workdir = str(tmp_path / 'run')
  result = launch(workdir, '--num_steps=2000', '--eval_every=1000')
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  # One line names the learner's device; run.json records it (this machine has no GPU).
  assert [l for l in result.stdout.splitlines() if l.startswith('learner device:')] == [
      'learner device: cpu']
  with open(os.path.join(workdir, 'run.json')) as f:
    assert json.load(f)['learner_device'] == 'cpu'

  evaluator = _rows(workdir, 'evaluator')
  assert {'actor_steps', 'episode_return'} <= set(evaluator[0])
  # Untrained policy at 0 steps, then one evaluation per 1000 steps (cartpole episodes: 1000).
  assert [int(float(r['actor_steps'])) for r in evaluator] == [0, 1000, 2000]
  learner = _rows(workdir, 'learner')
  assert float(learner[-1]['learner_steps']) > 0
  assert {'critic_loss', 'wpo_loss', 'kl_mean', 'policy_stddev_mean', 'policy_grad_norm',
          'sgd_steps_per_s'} <= set(learner[-1])
  assert len(_rows(workdir, 'actor')) == 2
  with open(os.path.join(workdir, 'learning_curve.png'), 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  assert os.listdir(os.path.join(workdir, 'tensorboard'))
  manifest = _manifest(workdir)
  assert manifest['counts']['actor_steps'] == 2000
  assert manifest['counts']['learner_steps'] > 0


def test_resume_after_sigkill_continues_counters_and_policy(tmp_path):
  workdir = str(tmp_path / 'run')
  process = launch(workdir, '--num_steps=8000', '--eval_every=1000',
                    '--checkpoint_every_minutes=0.0001', wait=False)
  _wait_until(process, lambda: _checkpointed_steps(workdir) >= 2000,
              'no checkpoint at >= 2000 steps', period=0.5)
  process.send_signal(signal.SIGKILL)
  process.wait()
  killed_at = _manifest(workdir)
  evaluations_before = len(_rows(workdir, 'evaluator'))

  result = launch(workdir, '--num_steps=8000', '--eval_every=1000',
                   '--checkpoint_every_minutes=0.0001')
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  evaluator = _rows(workdir, 'evaluator')
  resumed = evaluator[evaluations_before:]
  steps = [int(float(r['actor_steps'])) for r in resumed]
  # The step counter continues from the checkpoint instead of restarting at 0, and the untrained
  # evaluation at step 0 is not repeated.
  assert steps and min(steps) > killed_at['counts']['actor_steps'] and 0 not in steps
  assert steps[-1] == 8000
  learner_steps = [float(r['learner_steps']) for r in _rows(workdir, 'learner')]
  first_after_resume = next(s for s in learner_steps if s > killed_at['counts']['learner_steps'])
  # The learner resumed from its checkpointed step count: its logged counts never restart.
  assert _manifest(workdir)['counts']['learner_steps'] > killed_at['counts']['learner_steps']
  assert first_after_resume > killed_at['counts']['learner_steps']
  # Evaluation returns: the first resumed evaluation comes from the restored (trained) policy,
  # so it is evaluated with parameters that the checkpoint held, not a fresh initialisation.
  resumed_rows = [r for r in evaluator[evaluations_before:]]
  assert all(float(r['learner_steps']) >= killed_at['counts']['learner_steps'] for r in resumed_rows)

  # A relaunch of the finished run restores everything and, with no step left to take, writes
  # it straight back: the learner's state (parameters, targets, optimiser, step, key), the
  # replay's size and the counts must equal the checkpoint's, leaf by leaf.
  finished = _checkpoint_contents(workdir)
  assert finished.replay_size > 0
  assert int(finished.learner_state.steps) == finished.counts['learner_steps']
  result = launch(workdir, '--num_steps=8000', '--eval_every=1000')
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  relaunched = _checkpoint_contents(workdir)
  assert relaunched.sequence == finished.sequence + 1  # A new checkpoint, not the old one.
  jax.tree_util.tree_map(np.testing.assert_array_equal, relaunched.learner_state,
                         finished.learner_state)
  assert relaunched.replay_size == finished.replay_size
  for name in ('actor_steps', 'actor_episodes', 'learner_steps', 'evaluator_episodes'):
    assert relaunched.counts[name] == finished.counts[name], name


def test_a_fall_back_resume_keeps_only_the_resumed_evaluations_in_the_curve(tmp_path):
  workdir = str(tmp_path / 'run')
  flags = ('--eval_every=1000', '--checkpoint_every_minutes=0.0001')
  result = launch(workdir, '--num_steps=3000', *flags)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  # Damage every checkpoint taken at 3000 steps: the relaunch falls back to one at 2000 and
  # evaluates 3000 again, from other parameters, while the first 3000-step row stays in the log.
  checkpoints = os.path.join(workdir, 'checkpoints')
  for name in sorted(os.listdir(checkpoints)):
    commit = os.path.join(checkpoints, name, 'commit.json')
    if os.path.exists(commit):
      with open(commit) as f:
        if json.load(f)['counts']['actor_steps'] == 3000:
          with open(os.path.join(checkpoints, name, 'learner.msgpack'), 'r+b') as f:
            f.write(b'damaged')
  before = _rows(workdir, 'evaluator')
  assert [int(float(r['actor_steps'])) for r in before] == [0, 1000, 2000, 3000]

  result = launch(workdir, '--num_steps=3000', *flags)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  after = _rows(workdir, 'evaluator')
  assert [int(float(r['actor_steps'])) for r in after] == [0, 1000, 2000, 3000, 3000]
  curve = report.read_run(workdir)
  # One evaluation per step, and at 3000 the resumed run's, not a mean of the two.
  assert curve.steps == [0, 1000, 2000, 3000]
  assert curve.returns[-1] == pytest.approx(float(after[-1]['episode_return']))
  assert curve.returns[:3] == pytest.approx([float(r['episode_return']) for r in before[:3]])


@pytest.mark.parametrize('stop', [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_writes_a_checkpoint_and_exits(tmp_path, stop):
  """SIGTERM (a scheduler's pre-emption, `kill`) stops a run like Ctrl-C: a checkpoint, then exit.

  Without a handler of its own the run either died without a checkpoint or, with Acme's loop
  taking SIGTERM for itself, cut one training segment short and carried on.
  """
  workdir = str(tmp_path / 'run')
  process = launch(workdir, '--num_steps=200000', '--eval_every=1000', wait=False)
  # Past the first 1000 steps: inside training.
  _wait_until(process, lambda: len(_evaluations(workdir)) >= 2, 'no evaluation after 1000 steps')
  assert _manifest(workdir) is None  # No periodic checkpoint yet (every 5 minutes).
  process.send_signal(stop)
  output, _ = process.communicate(timeout=120)
  assert process.returncode != 0, output[-3000:]
  assert 'Checkpoint written: ' in output and 'Interrupted; re-run' in output, output[-3000:]
  stopped = _manifest(workdir)['counts']
  assert 1000 <= stopped['actor_steps'] < 200000 and stopped['learner_steps'] > 0
  # The checkpoint is the run's last word: no evaluation was logged past it.
  assert max(int(float(r['actor_steps'])) for r in _rows(workdir, 'evaluator')) <= (
      stopped['actor_steps'])


def test_a_sigterm_during_start_up_stops_the_run_cleanly(tmp_path):
  """Between writing run.json and its main loop (Reverb, learner, the first evaluation's
  compilation) a run met SIGTERM at its default: killed where it stood (exit status -15), with
  no message. It now stops as a Ctrl-C does there: the launcher's line, nothing to checkpoint."""
  workdir = str(tmp_path / 'run')
  process = launch(workdir, '--num_steps=1000', wait=False)
  _wait_until(process, lambda: os.path.exists(os.path.join(workdir, 'run.json')),
              'no run.json', period=0.02)
  process.send_signal(signal.SIGTERM)
  output, _ = process.communicate(timeout=120)
  assert process.returncode == 1, output[-3000:]
  assert 'Interrupted; re-run' in output and 'Traceback' not in output, output[-3000:]
  # The main loop never began: no evaluation, no checkpoint.
  assert 'Checkpoint written' not in output and _manifest(workdir) is None, output[-3000:]
  assert not os.path.exists(os.path.join(workdir, 'logs', 'evaluator', 'logs.csv'))
  with open(os.path.join(workdir, 'run.json')) as f:
    assert json.load(f)['task'] == 'cartpole:swingup'


def test_an_evaluation_cut_short_by_sigterm_is_played_again_whole_on_resume(tmp_path):
  """The checkpoint a SIGTERM writes during an evaluation counts the episodes played; the
  resumed run takes them back and plays the evaluation again whole at the same counts before it
  trains, so the curve's point is one whole evaluation. (Once the cut one stayed at the episodes
  played; then its rest was played, a policy of its own in a Ray run.)"""
  workdir = str(tmp_path / 'run')
  flags = ('--num_steps=1000', '--eval_every=1000', '--eval_episodes=4')
  process = launch(workdir, *flags, wait=False)
  # The untrained policy's evaluation has begun: 1 of its 4 episodes played.
  _wait_until(process, lambda: _evaluations(workdir), 'no evaluation episode', period=0.05)
  process.send_signal(signal.SIGTERM)
  output, _ = process.communicate(timeout=120)
  assert 'Checkpoint written: ' in output and 'Interrupted; re-run' in output, output[-3000:]
  stopped = _manifest(workdir)['counts']
  assert stopped['actor_steps'] == 0 and 1 <= stopped['evaluator_episodes'] < 4, stopped
  assert len(_rows(workdir, 'evaluator')) == stopped['evaluator_episodes']

  result = launch(workdir, *flags)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  rows, played = _rows(workdir, 'evaluator'), int(stopped['evaluator_episodes'])
  assert [int(float(r['actor_steps'])) for r in rows] == [0] * (played + 4) + [1000] * 4
  # Numbered anew from the last whole evaluation: the log's timeline drops the cut one's rows.
  assert [int(float(r['evaluator_episodes'])) for r in rows] == [
      *range(1, played + 1), *range(1, 9)]
  curve = plots.aggregate(plots.read_returns(os.path.join(workdir, 'logs', 'evaluator',
                                                          'logs.csv')))
  assert curve.steps == [0, 1000] and curve.counts == [4, 4]
  assert [round(m, 6) for m in curve.means] == [
      round(sum(float(r[plots.RETURN_COLUMN]) for r in whole) / 4, 6)
      for whole in (rows[played:played + 4], rows[played + 4:])]
  assert report.read_run(workdir).steps == [0, 1000]


# The local launcher, but the run gets a SIGTERM just after training reached its first
# evaluation point, before that evaluation begins: the moment a stop once cost a panel run its
# 10k point. Run as a script: argv[1] is the repository, the rest run_wpo's flags.
_STOP_BEFORE_SECOND_EVALUATION = """
import os, signal, sys
sys.path.insert(0, sys.argv.pop(1))
from agents import reverb_bind
reverb_bind.ensure_preloaded()
from runner import process
process.prepare()
from runner import wiring
evaluate, calls = wiring.Evaluator.evaluate, []

def evaluate_after_a_stop(self):
  calls.append(self)
  if len(calls) == 2:
    os.kill(os.getpid(), signal.SIGTERM)
  return evaluate(self)

wiring.Evaluator.evaluate = evaluate_after_a_stop
from experiments import run_wpo
run_wpo.main()
"""


def test_a_stop_between_training_and_its_evaluation_is_evaluated_on_resume(tmp_path):
  """Training reached 1000 steps, then a SIGTERM came before the 1000-step evaluation's first
  episode ended: the checkpoint holds 1000 steps and only the untrained policy's evaluation. The
  resumed run owes that evaluation and plays it before anything else; before, it trained on (or,
  at the budget, finished) and the curve had no point at 1000."""
  workdir = str(tmp_path / 'run')
  flags = ('--num_steps=1000', '--eval_every=1000', '--eval_episodes=2')
  driver = tmp_path / 'stop_before_second_evaluation.py'
  driver.write_text(_STOP_BEFORE_SECOND_EVALUATION)
  stopped = launch(workdir, *flags, program=(str(driver), REPO))
  assert stopped.returncode != 0 and 'Checkpoint written: ' in stopped.stdout, (
      stopped.stdout[-3000:] + stopped.stderr[-3000:])
  counts = _manifest(workdir)['counts']
  assert counts['actor_steps'] == 1000 and counts['evaluator_episodes'] == 2, counts
  # The schedule's place: only the evaluation that began at 0 is done.
  assert counts['evaluator_due_from'] == 1, counts
  assert [int(float(r['actor_steps'])) for r in _rows(workdir, 'evaluator')] == [0, 0]

  result = launch(workdir, *flags)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  rows = _rows(workdir, 'evaluator')
  assert [int(float(r['actor_steps'])) for r in rows] == [0, 0, 1000, 1000]
  assert [int(float(r['evaluator_episodes'])) for r in rows] == [1, 2, 3, 4]
  assert report.read_run(workdir).steps == [0, 1000]
  # Nothing trained on resume: the run was at its budget.
  assert _manifest(workdir)['counts']['actor_steps'] == 1000


class _Checkpoint(NamedTuple):
  learner_state: Any
  counts: Dict[str, float]
  replay_size: int
  sequence: int


def _checkpoint_contents(workdir) -> _Checkpoint:
  """The run's last checkpoint through `agents.checkpointing.RunCheckpointer`, with a template
  built from run.json, and the size of its replay as a Reverb server loads it."""
  # pylint: disable=g-import-not-at-top
  import agents  # noqa: F401  (dm-acme patches before acme is imported)
  from acme import specs
  from agents import methods
  from agents import checkpointing
  from agents import environments
  from agents import reverb_bind
  from agents import wpo
  from wpo_jax import learning
  # pylint: enable=g-import-not-at-top
  with open(os.path.join(workdir, 'run.json')) as f:
    settings = json.load(f)
  config = wpo.WPOConfig(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in settings['wpo_config'].items()})
  spec = specs.make_environment_spec(environments.make_environment(settings['task'], 0))
  parts = methods.wpo_agent_parts(config, spec, lambda: None)
  nets = parts.networks
  template = learning.make_learner(nets.networks, nets.action_dim, config.learner_config()).init(
      jax.random.PRNGKey(0), nets.observation_dim)
  checkpointer = checkpointing.RunCheckpointer(os.path.join(workdir, 'checkpoints'))
  restored = checkpointer.restore(template)
  server = reverb_bind.start_server(parts.builder.make_replay_tables(spec), '127.0.0.1',
                                    checkpointer=checkpointer.replay_checkpointer())
  try:
    client = reverb.Client(f'127.0.0.1:{server.port}')
    replay_size = sum(int(t.current_size) for t in client.server_info().values())
  finally:
    server.stop()
  return _Checkpoint(restored.learner_state, restored.counts, replay_size,
                     _manifest(workdir)['sequence'])


def test_bad_input_fails_before_any_work(tmp_path):
  workdir = tmp_path / 'run'
  result = launch(str(workdir), '--env=cartpole:swingupp', '--num_steps=10')
  assert result.returncode != 0
  assert "Did you mean 'cartpole:swingup'" in result.stderr + result.stdout
  assert not workdir.exists()
  result = launch(str(workdir), '--config=batch_size=0')
  assert result.returncode != 0 and 'batch_size' in result.stderr
  result = launch(str(workdir), '--config=no_such_field=1')
  assert result.returncode != 0 and 'no_such_field' in result.stderr
  result = launch(str(workdir), '--num_components=3')
  assert result.returncode != 0 and 'add --policy=mixture' in result.stderr
  result = launch(str(workdir), '--policy=mixture', '--config=policy=mixture')
  assert result.returncode != 0 and '--policy and --config=policy=... are both' in result.stderr
  result = launch(str(workdir), '--policy=beta')
  assert result.returncode != 0 and 'gaussian|mixture|tanh_gaussian' in result.stderr
  assert not workdir.exists()


def test_a_headless_launch_prints_no_glfw_warning(tmp_path):
  """Without MUJOCO_GL or a display, the entry point sets MUJOCO_GL before dm_control is imported,
  so GLFW (dm_control's default) never loads and warns "DISPLAY environment variable is missing".
  The launch stops at flag validation, after every heavy module has been imported."""
  environment = {k: v for k, v in os.environ.items() if k not in ('MUJOCO_GL', 'DISPLAY')}
  for module in ('experiments.run_wpo', 'experiments.compare'):
    result = subprocess.run(
        [sys.executable, '-m', module, f'--workdir={tmp_path / "run"}', '--seeds=-1']
        if module.endswith('compare') else
        [sys.executable, '-m', module, f'--workdir={tmp_path / "run"}', '--env=cartpole:nope'],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and 'error:' in result.stderr, result.stderr[-2000:]
    assert 'DISPLAY' not in result.stdout + result.stderr, result.stderr[-2000:]
    assert 'GLFW' not in result.stdout + result.stderr, result.stderr[-2000:]


def _wpo_settings(**config):
  from agents import wpo  # pylint: disable=g-import-not-at-top
  from runner import workdir  # pylint: disable=g-import-not-at-top
  return workdir.run_settings('wpo', 'cartpole:swingup', 0, 1000, 1,
                              wpo_config=wpo.make_config('cpu', **config))


def test_resume_accepts_a_run_json_from_before_a_config_field_existed(tmp_path):
  from runner import workdir  # pylint: disable=g-import-not-at-top
  settings = _wpo_settings()
  assert workdir.check_or_write_settings(str(tmp_path), settings) is False  # Fresh: written.
  with open(tmp_path / 'run.json') as f:
    written = json.load(f)
  assert written == settings
  del written['wpo_config']['num_components']  # As written before the field was added.
  with open(tmp_path / 'run.json', 'w') as f:
    json.dump(written, f)
  assert workdir.check_or_write_settings(str(tmp_path), settings) is True
  changed = r"different settings \(\['wpo_config.num_components'\]\)"
  with pytest.raises(workdir.SettingsMismatch, match=changed):
    workdir.check_or_write_settings(str(tmp_path), _wpo_settings(num_components=3))


def test_resume_reads_the_run_json_layouts_of_earlier_versions(tmp_path):
  """run_wpo's {'env', 'preset', 'config'} and the comparison's {'eval_every', 'settings',
  'wpo_config'}, as main wrote them before the one schema, resume as the same settings."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from agents import methods  # pylint: disable=g-import-not-at-top
  from agents import wpo  # pylint: disable=g-import-not-at-top
  from runner import workdir  # pylint: disable=g-import-not-at-top
  config = dataclasses.asdict(wpo.make_config('cpu'))
  old_run_wpo = tmp_path / 'run_wpo'
  old_run_wpo.mkdir()
  (old_run_wpo / 'run.json').write_text(json.dumps(
      {'env': 'cartpole:swingup', 'seed': 0, 'preset': 'cpu', 'config': config}))
  settings = _wpo_settings()
  assert workdir.check_or_write_settings(str(old_run_wpo), settings) is True
  assert json.loads((old_run_wpo / 'run.json').read_text())['env'] == 'cartpole:swingup'  # Kept.
  with pytest.raises(workdir.SettingsMismatch, match=r"\['seed'\]"):
    workdir.check_or_write_settings(str(old_run_wpo), dict(settings, seed=1))

  shared = methods.CommonSettings(hidden_sizes=(32, 32))
  old_compare = tmp_path / 'compare'
  old_compare.mkdir()
  (old_compare / 'run.json').write_text(json.dumps(
      {'method': 'sac', 'task': 'reacher:easy', 'seed': 2, 'eval_every': 500,
       'eval_episodes': 2, 'settings': json.loads(json.dumps(dataclasses.asdict(shared)))}))
  same = workdir.run_settings('sac', 'reacher:easy', 2, 500, 2, shared_settings=shared)
  assert workdir.read_settings(str(old_compare)) == same
  assert workdir.changed_settings(str(old_compare), same) == []
  other = workdir.run_settings('sac', 'reacher:easy', 2, 1000, 2, shared_settings=shared)
  assert workdir.changed_settings(str(old_compare), other) == ['evaluation.every']
  wider = workdir.run_settings('sac', 'reacher:easy', 2, 1000, 2,
                               shared_settings=methods.CommonSettings(hidden_sizes=(64, 64)))
  assert workdir.changed_settings(str(old_compare), wider) == [
      'evaluation.every', 'shared_settings.hidden_sizes']
