"""Distributed runs on a real local Ray cluster and Reverb server: budget, faults, shutdown, resume.

Each launch tags its environment with a fresh id; every process Ray starts inherits it, so the
tests can tell this launch's processes from anyone else's and check that none outlives the run.
"""

import collections
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from test_policy_heads import mixture_components_in_checkpoint
from test_run_wpo import launch as launch_local
from test_run_wpo import sigint_as_under_a_terminal
from test_run_wpo import TINY  # Same tiny networks as the local launcher tests.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = 'WPO_DISTRIBUTED_TEST_RUN'


class Launch:
  """One `run_wpo --distributed` process in its own session (so SIGINT reaches only it)."""

  def __init__(self, workdir, *flags):
    self.tag = uuid.uuid4().hex
    command = [sys.executable, '-m', 'experiments.run_wpo', '--distributed',
               '--env=cartpole:swingup', f'--workdir={workdir}', *TINY, *flags]
    with sigint_as_under_a_terminal():
      self.process = subprocess.Popen(command, cwd=REPO, env={**os.environ, TAG: self.tag},
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, start_new_session=True)
    self.output = ''

  def wait(self, timeout=600):
    self.output, _ = self.process.communicate(timeout=timeout)
    return self.process.returncode

  def check_exits_cleanly(self):
    """The run's exit status is 0 and no process it started is left."""
    assert self.wait() == 0, self.output[-4000:]
    assert_no_processes_left(self.tag)


def tagged_processes(tag):
  found = []
  for process in psutil.process_iter():
    try:
      if process.pid != os.getpid() and process.environ().get(TAG) == tag:
        found.append(process)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
      pass
  return found


def assert_no_processes_left(tag, grace_s=15.0):
  deadline = time.time() + grace_s
  left = tagged_processes(tag)
  while left and time.time() < deadline:
    time.sleep(0.5)
    left = tagged_processes(tag)
  if not left:
    return
  names = []
  for process in left:
    try:
      names.append(' '.join(process.cmdline())[:80] or process.name())
      process.kill()  # Do not leak them into the other tests.
    except psutil.Error:
      pass
  pytest.fail(f'processes left after the run: {names}')


def _rows(workdir, label):
  with open(os.path.join(workdir, 'logs', label, 'logs.csv')) as f:
    return list(csv.DictReader(f))


def _json(*parts):
  with open(os.path.join(*parts)) as f:
    return json.load(f)


def _wait_for(condition, launch, timeout=400, what='condition'):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if condition():
      return
    assert launch.process.poll() is None, launch.process.stdout.read()[-4000:]
    time.sleep(0.5)
  pytest.fail(f'no {what} within {timeout} s')


def _actor_rows(workdir, index):
  path = os.path.join(workdir, 'logs', f'actor_{index}', 'logs.csv')
  return _rows(workdir, f'actor_{index}') if os.path.exists(path) else []


def test_two_actors_complete_the_budget_and_leave_no_process(tmp_path):
  workdir = str(tmp_path / 'run')
  # A mixture head: --policy reaches the learner and the actors on other processes.
  launch = Launch(workdir, '--num_actors=2', '--num_steps=4000', '--eval_every=2000',
                  '--policy=mixture', '--num_components=3')
  launch.check_exits_cleanly()
  # Started on loopback: Ray's GCS and the Reverb address handed to the actors, the only
  # address Reverb listens on.
  assert 'Ray 127.0.0.1:' in launch.output and 'Reverb 127.0.0.1:' in launch.output
  assert '(listening on 127.0.0.1)' in launch.output
  # The learner's device in one line and in run.json; every worker's JAX device in its record
  # (no GPU here; with one, only the learner's would differ).
  assert 'learner device: cpu\n' in launch.output
  assert 'learner on' not in launch.output  # Named once, on that line (it was also in Ray's).
  assert _json(workdir, 'run.json')['learner_device'] == 'cpu'
  names = ('counter', 'replay', 'learner', 'evaluator', 'actor_0', 'actor_1')
  assert {n: _json(workdir, 'processes', f'{n}.json')['device'] for n in names} == dict.fromkeys(
      names, 'cpu')

  totals = _json(workdir, 'logs', 'counter', 'totals.json')
  counts = totals['counts']
  assert counts['actor_steps'] >= 4000 and counts['learner_steps'] > 0
  by_source = totals['by_source']
  assert by_source['actor_0']['actor_steps'] > 0 and by_source['actor_1']['actor_steps'] > 0
  assert by_source['actor_0']['actor_steps'] + by_source['actor_1']['actor_steps'] == (
      counts['actor_steps'])
  for index in (0, 1):
    rows = _actor_rows(workdir, index)
    assert rows and {'episode_return', 'actor_steps'} <= set(rows[0])
  evaluator = _rows(workdir, 'evaluator')
  steps = [int(float(r['actor_steps'])) for r in evaluator]
  assert steps[0] == 0 and steps[-1] >= 4000 and 'episode_return' in evaluator[0]
  # The evaluator's rows carry the σ of the policy it evaluated (every component's, here).
  for row in evaluator:
    low, mean, high = (float(row[f'policy_stddev_{k}']) for k in ('min', 'mean', 'max'))
    assert 0 < low <= mean <= high < 5
  assert float(_rows(workdir, 'learner')[-1]['learner_steps']) > 0
  manifest = _json(workdir, 'checkpoints', 'manifest.json')
  assert manifest['counts']['actor_steps'] == counts['actor_steps']
  assert os.path.exists(os.path.join(workdir, 'learning_curve.png'))
  assert mixture_components_in_checkpoint(workdir) == 3


def _layout(workdir):
  """The workdir's files, relative, with what legitimately varies between launches named by kind:
  actor_<i> -> actor, learner-<n> -> learner-N, a replay checkpoint's timestamp, and the
  TensorBoard event files' names (they hold the host, pid and time)."""
  found = set()
  for directory, _, files in os.walk(workdir):
    for name in files:
      path = os.path.relpath(os.path.join(directory, name), workdir)
      path = re.sub(r'actor_\d+', 'actor', path)
      path = re.sub(r'learner-\d+\.msgpack', 'learner-N.msgpack', path)
      path = re.sub(r'replay/[^/]+/', 'replay/T/', path)
      path = re.sub(r'^tensorboard/.*', 'tensorboard/events', path)
      found.add(path)
  return found


def _header(workdir, label):
  with open(os.path.join(workdir, 'logs', label, 'logs.csv')) as f:
    return sorted(next(csv.reader(f)))


@pytest.mark.slow
def test_local_and_ray_runs_write_the_same_layout_and_log_schemas(tmp_path):
  flags = ('--num_steps=3000', '--eval_every=1000', '--eval_episodes=3')
  local, ray_run = str(tmp_path / 'local'), str(tmp_path / 'ray')
  result = launch_local(local, *flags)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  Launch(ray_run, '--num_actors=2', *flags).check_exits_cleanly()

  local_layout, ray_layout = _layout(local), _layout(ray_run)
  # Only Ray's process records and its launch totals are extra; nothing local is missing.
  ray_only = ray_layout - local_layout
  assert ray_only == {'logs/counter/totals.json', 'processes/counter.json',
                      'processes/replay.json', 'processes/learner.json',
                      'processes/evaluator.json', 'processes/actor.json'}, ray_only
  assert local_layout <= ray_layout, local_layout - ray_layout
  assert {'run.json', 'learning_curve.png', 'checkpoints/manifest.json',
          'logs/evaluator/logs.csv', 'logs/learner/logs.csv', 'logs/actor/logs.csv'} <= local_layout
  for label in ('evaluator', 'learner'):
    assert _header(local, label) == _header(ray_run, label), label
  for index in (0, 1):
    assert _header(local, 'actor') == _header(ray_run, f'actor_{index}')
  # One run.json schema: only the launch mode is not recorded, so the two files are equal.
  assert _json(local, 'run.json') == _json(ray_run, 'run.json')
  # While the actors and the learner go on, each of the Ray run's evaluations is logged at one
  # step (its episodes used to end, and be plotted, at several).
  for workdir in (local, ray_run):
    steps = collections.Counter(float(r['actor_steps']) for r in _rows(workdir, 'evaluator'))
    assert len(steps) >= 3 and set(steps.values()) == {3}, (workdir, steps)


@pytest.mark.slow
def test_sigkilled_actor_restarts_and_the_run_completes(tmp_path):
  workdir = str(tmp_path / 'run')
  launch = Launch(workdir, '--num_actors=2', '--num_steps=10000', '--eval_every=5000')
  info_path = os.path.join(workdir, 'processes', 'actor_1.json')
  # Mid-run: actor 1 has finished an episode and the budget is far off.
  _wait_for(lambda: _actor_rows(workdir, 1), launch, what='actor_1 episode')
  killed = _json(info_path)
  os.kill(killed['pid'], signal.SIGKILL)

  launch.check_exits_cleanly()
  restarted = _json(info_path)
  assert restarted['restarted'] and restarted['pid'] != killed['pid']
  totals = _json(workdir, 'logs', 'counter', 'totals.json')
  assert totals['counts']['actor_steps'] >= 10000
  # The restarted actor went on contributing after the kill.
  assert float(_actor_rows(workdir, 1)[-1]['actor_steps']) > float(
      _actor_rows(workdir, 1)[0]['actor_steps'])


@pytest.mark.slow
@pytest.mark.parametrize('stop', [
    lambda pid: os.killpg(pid, signal.SIGINT),  # What Ctrl-C in a terminal sends.
    lambda pid: os.kill(pid, signal.SIGTERM),  # `kill <launcher pid>`.
    lambda pid: os.killpg(pid, signal.SIGTERM),  # `timeout`, a container stop, a batch system.
], ids=['ctrl_c', 'sigterm', 'sigterm_to_the_group'])
def test_a_stop_checkpoints_and_a_relaunch_resumes(tmp_path, stop):
  workdir = str(tmp_path / 'run')
  launch = Launch(workdir, '--num_actors=2', '--num_steps=40000', '--eval_every=2000')
  _wait_for(lambda: len(_actor_rows(workdir, 0)) >= 2, launch, what='two actor_0 episodes')
  stop(launch.process.pid)
  assert launch.wait(timeout=300) != 0, launch.output[-4000:]
  assert 'Checkpoint written: ' in launch.output and 'Interrupted; re-run' in launch.output, (
      launch.output[-3000:])
  assert_no_processes_left(launch.tag)
  interrupted = _json(workdir, 'checkpoints', 'manifest.json')['counts']
  assert interrupted['actor_steps'] >= 2000 and interrupted['learner_steps'] > 0
  evaluations_before = len(_rows(workdir, 'evaluator'))

  budget = int(interrupted['actor_steps']) + 3000
  relaunch = Launch(workdir, '--num_actors=1', f'--num_steps={budget}', '--eval_every=2000')
  relaunch.check_exits_cleanly()
  assert 'resumed' in relaunch.output
  resumed = _rows(workdir, 'evaluator')[evaluations_before:]
  # Counts continue from the checkpoint: no evaluation of an untrained policy at step 0.
  assert resumed and min(float(r['actor_steps']) for r in resumed) >= interrupted['actor_steps']
  assert all(float(r['learner_steps']) >= interrupted['learner_steps'] for r in resumed)
  final = _json(workdir, 'checkpoints', 'manifest.json')['counts']
  assert final['actor_steps'] >= budget and final['learner_steps'] > interrupted['learner_steps']


def _runs_a_ray_worker(tag):
  """Whether Ray runs one of the launch's workers (`ray::CounterWorker`, ...), which it starts
  only after `ray.init` returned; Ray's own `ray::` processes start during `ray.init`."""
  for process in tagged_processes(tag):
    try:
      if re.match(r'ray::\w+Worker\b', ' '.join(process.cmdline())):
        return True
    except psutil.Error:
      pass
  return False


@pytest.mark.slow
def test_a_sigterm_during_the_workers_start_up_stops_the_launch_cleanly(tmp_path):
  """Ray's driver takes SIGTERM with a fatal-signal handler: a SIGTERM after `ray.init` but
  before the main loop aborted the launcher ("*** SIGTERM received", exit status 134) without
  its clean-up. It now stops like a Ctrl-C there, with nothing to checkpoint. (During `ray.init`
  itself Ray's own Python handler exits, after stopping what it started.)"""
  workdir = str(tmp_path / 'run')
  launch = Launch(workdir, '--num_actors=1', '--num_steps=3000')
  # Ray is up and runs the first workers, which are still importing: nothing has trained.
  _wait_for(lambda: _runs_a_ray_worker(launch.tag), launch, timeout=120, what='Ray worker')
  launch.process.send_signal(signal.SIGTERM)
  assert launch.wait(timeout=300) == 1, launch.output[-4000:]
  assert 'SIGTERM received' not in launch.output, launch.output[-4000:]
  assert 'Interrupted; re-run' in launch.output, launch.output[-4000:]
  assert 'Checkpoint written' not in launch.output  # The main loop never began.
  assert 'workers up in' not in launch.output, launch.output[-4000:]
  assert_no_processes_left(launch.tag)


@pytest.mark.slow
def test_joins_a_two_node_cluster_and_spreads_the_actors(tmp_path, monkeypatch):
  from ray import cluster_utils  # pylint: disable=g-import-not-at-top
  tag = uuid.uuid4().hex
  monkeypatch.setenv(TAG, tag)  # The cluster's processes are tagged too.
  # Two raylets on this machine: a head with 1 CPU and a worker node with 2. The learner and two
  # actors need 3 CPUs, so the run must use both nodes.
  cluster = cluster_utils.Cluster(initialize_head=True,
                                  head_node_args={'num_cpus': 1, 'include_dashboard': False})
  try:
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    workdir = str(tmp_path / 'run')
    launch = Launch(workdir, '--num_actors=2', '--num_steps=3000', '--eval_every=3000',
                    f'--ray_address={cluster.address}')
    assert launch.wait() == 0, launch.output[-4000:]
  finally:
    cluster.shutdown()
  assert_no_processes_left(tag)
  # The replay worker, started by a cluster that is not the launcher's, still gets the bind
  # wrapper (through its runtime_env): Reverb listens on the address the actors use, only.
  assert re.search(r'Reverb ([0-9.]+):\d+ \(listening on \1\)', launch.output), launch.output
  nodes = {name: _json(workdir, 'processes', f'{name}.json')['node_id']
           for name in ('learner', 'replay', 'counter', 'evaluator', 'actor_0', 'actor_1')}
  # Learner, replay, counter and evaluator share the launcher's node; actors fill both nodes.
  assert len({nodes[n] for n in ('learner', 'replay', 'counter', 'evaluator')}) == 1
  assert len(set(nodes.values())) == 2
  assert _json(workdir, 'logs', 'counter', 'totals.json')['counts']['actor_steps'] >= 3000


def _closed_port():
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]  # Closed once the probe is: nothing listens there.


@pytest.mark.parametrize('flags, message', [
    (['--env=cartpole:swingupp'], "Did you mean 'cartpole:swingup'"),
    (['--num_actors=0'], '--num_actors=0 is invalid'),
    ([f'--ray_address=127.0.0.1:{_closed_port()}'], 'no Ray head answers at'),
])
def test_configuration_errors_fail_before_any_process_starts(tmp_path, flags, message):
  workdir = tmp_path / 'run'
  start = time.time()
  launch = Launch(str(workdir), '--num_steps=100', *flags)
  assert launch.wait(timeout=120) != 0
  assert message in launch.output, launch.output[-3000:]
  assert 'Started a local Ray instance' not in launch.output
  assert not workdir.exists()
  assert time.time() - start < 60  # No Ray start-up, no worker imports.
  assert_no_processes_left(launch.tag, grace_s=0)


def test_validate_rejects_a_busy_reverb_port_and_bad_addresses(monkeypatch):
  from runner import ray_cluster  # pylint: disable=g-import-not-at-top
  with socket.socket(socket.AF_INET6) as server:
    server.bind(('::', 0))
    server.listen()
    busy = server.getsockname()[1]
    with pytest.raises(ValueError, match=f'--reverb_port={busy} cannot be used'):
      ray_cluster.validate(ray_cluster.Cluster(reverb_port=busy))
  with pytest.raises(ValueError, match='--reverb_port=70000 is invalid'):
    ray_cluster.validate(ray_cluster.Cluster(reverb_port=70000))
  with pytest.raises(ValueError, match='host:port'):
    ray_cluster.validate(ray_cluster.Cluster(ray_address='head-node'))
  monkeypatch.delenv('RAY_ADDRESS', raising=False)
  # No cluster runs here, as Ray looks for one ('auto' also finds any GCS process on the machine,
  # such as another test's or experiment's).
  from ray._private import services  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(services, 'find_gcs_addresses', lambda: [])
  monkeypatch.setattr(services, 'find_bootstrap_address', lambda temp_dir: None)
  with pytest.raises(ValueError, match='--ray_address=auto'):
    ray_cluster.validate(ray_cluster.Cluster(ray_address='auto'))
  ray_cluster.validate(ray_cluster.Cluster(num_actors=3))


def _blocked_signals(pid):
  """The signals process `pid`'s main thread blocks, from /proc (Linux)."""
  with open(f'/proc/{pid}/status') as f:
    mask = int(next(line for line in f if line.startswith('SigBlk:')).split()[1], 16)
  return {s for s in signal.Signals if mask >> (s - 1) & 1}


def test_ray_started_here_leaves_a_sigterm_to_the_group_to_the_launcher(monkeypatch):
  """The GCS and raylet ray_cluster.start launches share this process's group (a SIGTERM to the
  group once stopped them during the launcher's checkpoint); they block SIGTERM, this process
  does not."""
  from runner import ray_cluster  # pylint: disable=g-import-not-at-top
  import ray  # pylint: disable=g-import-not-at-top
  from ray._private import ray_constants  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv('RAY_ADDRESS', raising=False)
  # Restored afterwards: start() sets both for the loopback-only node.
  monkeypatch.setenv('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER', '0')
  monkeypatch.setattr(ray_constants, 'ENABLE_RAY_CLUSTER', ray_constants.ENABLE_RAY_CLUSTER)
  ray_cluster.start(ray_cluster.Cluster(num_actors=1))
  try:
    group = [p for p in psutil.Process().children(recursive=True)
             if os.getpgid(p.pid) == os.getpgid(0)]
    commands = {p.pid: ' '.join(p.cmdline()) for p in group}
    assert any('gcs_server' in c for c in commands.values()), commands
    assert any('raylet' in c for c in commands.values()), commands
    for p in group:
      assert signal.SIGTERM in _blocked_signals(p.pid), commands[p.pid]
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
  finally:
    ray.shutdown()
