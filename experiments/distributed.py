"""Distributed training on Ray: a Reverb server, a learner, N actors, an evaluator and a counter.

  python -m experiments.run_wpo --distributed --num_actors=4 --env=walker:walk --workdir=/tmp/w

Every piece is a Ray actor (a process of its own):

  counter     acme `counting.Counter`, shared by all; it holds `actor_steps`, which stops the run
  replay      `reverb.Server` with the builder's tables: the real SampleToInsertRatio limiter and
              min_replay_size (the single-process run turns both off), so the learner's sampling
              paces the actors' inserts and vice versa
  learner     samples replay over gRPC, steps, serves `get_variables`, writes checkpoints
  actor_<i>   Acme `EnvironmentLoop`: its own environment and seed, the builder's actor fed by a
              `VariableClient` whose source is the learner's handle, and a Reverb adder
  evaluator   runs the evaluation policy every `eval_every` actor steps, as the local run does

A Ray started here listens on 127.0.0.1 only; `--ray_address` joins a cluster instead. Actors
reach replay over TCP at `host:port`, the host being the replay node's IP as Ray knows it; the
Reverb server listens on that address and no other (`agents.reverb_bind`), and the learner through its Ray handle, so actors may run on any node. The counter, replay,
learner and evaluator run on the launcher's node (the learner takes a GPU when that node has
one), which therefore holds the checkpoints and the learner/evaluator logs; actors are spread
over the cluster and write `logs/actor_<i>/` on their own node.

Faults: an actor or the evaluator whose process dies is restarted by Ray (`max_restarts`) and its
`run` call retried (`max_task_retries`); the new process builds a fresh environment, adder and
variable client and carries on until the counter reaches the budget. The counter, replay and
learner are not restarted: if one dies the run stops, and re-launching with the same --workdir
resumes from the last checkpoint (learner state, counts, replay). Normal completion, errors and
Ctrl-C all end with every worker killed and `ray.shutdown()`.

Every worker writes `processes/<name>.json` (pid, host, node, whether it is a restart).
The step budget is checked between episodes, so the run ends with up to one extra episode per
actor beyond --num_steps, and evaluations fall at the first counter reading past each multiple of
--eval_every rather than exactly on it.
"""

from agents import video  # pylint: disable=g-bad-import-order
video.configure_headless_rendering()  # Before dm_control is imported, here and in every worker.

import dataclasses  # pylint: disable=g-import-not-at-top,wrong-import-position
import json
import os
import re
import socket
import threading
import time
import warnings
from typing import Any, Callable, Dict, List, Optional

from absl import logging
from acme import core
from acme import specs
from acme.environment_loop import EnvironmentLoop
from acme.utils import counting
import jax
import numpy as np
import ray
from ray._private import ray_constants
from ray._private import services as ray_services
from ray.util import scheduling_strategies
import reverb
import tqdm

from agents import checkpointing
from agents import devices
from agents import environments
from agents import policy_stats
from agents import reverb_bind
from experiments import plots
from experiments import training

# Ray restarts an actor or the evaluator at most this many times; then the run fails.
ACTOR_MAX_RESTARTS = 10
# Workers (process start, imports, first compile) must be up within this many seconds.
STARTUP_TIMEOUT_S = 600.0
ADDRESS_TIMEOUT_S = 3.0
# The run's wall-clock seconds, a count like the local loop's (experiments/training.py).
WALLCLOCK = 'wallclock_seconds'
# Ray's object store holds only parameters in transit; its default (30% of RAM) is far more.
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024
# Ray keeps a node on loopback only in its macOS/Windows mode; see `_loopback_only`.
_RAY_CLUSTER_MODE_ENV = 'RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'


@dataclasses.dataclass(frozen=True)
class Cluster:
  """Where and how wide to run: --num_actors, --ray_address, --reverb_port."""
  num_actors: int = 2
  ray_address: Optional[str] = None  # None: start Ray here, on loopback; 'auto' or host:port.
  reverb_port: int = 0  # 0: a free port.


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """Everything a worker needs to build its part; sent to every worker through Ray."""
  make_parts: Callable[..., Any]  # (spec, learner logger factory) -> baselines.AgentParts.
  task: str
  seed: int
  workdir: str
  spec: specs.EnvironmentSpec
  schedule: training.Schedule

  def parts(self, logger_fn: Callable[[], Any] = lambda: None):
    return self.make_parts(self.spec, logger_fn)

  @property
  def checkpoint_directory(self) -> str:
    return os.path.join(self.workdir, 'checkpoints')


# ------------------------------------------------------------------------------------------------
# Configuration checks: all of them run before Ray or any worker starts.


def validate(cluster: Cluster) -> None:
  """Raises ValueError for a bad cluster setting, an unreachable Ray address or a busy port."""
  if cluster.num_actors < 1:
    raise ValueError(f'--num_actors={cluster.num_actors} is invalid: it must be >= 1.')
  if not 0 <= cluster.reverb_port <= 65535:
    raise ValueError(f'--reverb_port={cluster.reverb_port} is invalid: it must be 0 (a free '
                     'port) or a TCP port number up to 65535.')
  if cluster.reverb_port:
    _check_port_free(cluster.reverb_port)
  if cluster.ray_address is not None:
    _check_reachable(_resolve(cluster.ray_address), cluster.ray_address)


def _resolve(address: str) -> str:
  """'auto' -> the host:port Ray itself would use (RAY_ADDRESS, or this node's `ray start`)."""
  if address != 'auto':
    return address
  try:
    return ray_services.canonicalize_bootstrap_address_or_die('auto')
  except ConnectionError:
    raise ValueError('--ray_address=auto: this machine runs no Ray cluster (start one with '
                     '`ray start --head`, or leave --ray_address out to start Ray here).') from None


def _check_port_free(port: int) -> None:
  """A wildcard bind on the launcher's node (where replay runs) fails if anything listens on
  `port` there, on any interface."""
  try:
    probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    wildcard = '::'
  except OSError:  # No IPv6 here; Reverb then listens on 0.0.0.0.
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    wildcard = '0.0.0.0'
  with probe:
    # As a listening server would: connections lingering in TIME_WAIT do not make it busy.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      probe.bind((wildcard, port))
    except OSError as error:
      raise ValueError(f'--reverb_port={port} cannot be used on this node: {error}.') from None


def _check_reachable(address: str, flag_value: str) -> None:
  """A TCP connection to the Ray GCS at host:port, with a short timeout."""
  match = re.fullmatch(r'\[?([^\[\]]+?)\]?:(\d+)', address)
  if not match:
    raise ValueError(f'--ray_address={flag_value!r} is invalid: give "auto" (the cluster this '
                     'node joined with `ray start`) or the head node\'s GCS address host:port.')
  host, port = match.group(1), int(match.group(2))
  try:
    socket.create_connection((host, port), timeout=ADDRESS_TIMEOUT_S).close()
  except OSError as error:
    raise ValueError(f'--ray_address={flag_value}: no Ray head answers at {address} ({error}). '
                     'Start one with `ray start --head --port=PORT`, or leave --ray_address out '
                     'to start Ray on this machine.') from None


# ------------------------------------------------------------------------------------------------
# Proxies that make Ray handles look like the Acme objects the workers expect.


class RemoteCounter(counting.Counter):
  """An acme Counter whose counts live in the shared `CounterWorker`; `source` names the caller."""

  def __init__(self, handle, source: str):
    super().__init__()
    self._handle, self._source = handle, source

  def increment(self, **counts):
    return ray.get(self._handle.increment.remote(self._source, counts))

  def get_counts(self):
    return ray.get(self._handle.get_counts.remote())


class RemoteVariableSource(core.VariableSource):
  """The learner's `get_variables`, through its Ray handle (arrays arrive as numpy)."""

  def __init__(self, learner_handle):
    self._learner = learner_handle

  def get_variables(self, names: List[str]) -> List[Any]:
    return ray.get(self._learner.get_variables.remote(list(names)))


def _record_process(workdir: str, name: str) -> None:
  """processes/<name>.json: where this worker runs, so that operators (and tests) can find it."""
  directory = os.path.join(workdir, 'processes')
  os.makedirs(directory, exist_ok=True)
  with warnings.catch_warnings():  # Ray's property warns about an API it uses internally.
    warnings.simplefilter('ignore', DeprecationWarning)
    restarted = ray.get_runtime_context().was_current_actor_reconstructed
  info = {'name': name, 'pid': os.getpid(), 'host': socket.gethostname(),
          'node_ip': ray.util.get_node_ip_address(),
          'node_id': ray.get_runtime_context().get_node_id(), 'started': time.time(),
          'restarted': restarted, 'device': devices.learner_device()}
  checkpointing.atomic_write(os.path.join(directory, f'{name}.json'),
                             json.dumps(info).encode())


def _cpu_only_jax() -> None:
  """Only the learner may use a GPU: JAX elsewhere would claim most of the GPU's memory."""
  jax.config.update('jax_platforms', 'cpu')


# ------------------------------------------------------------------------------------------------
# The workers. Plain classes: `train` turns them into Ray actors with the options they need.


class CounterWorker:
  """The run's one `counting.Counter`, plus what each worker added during this launch."""

  def __init__(self, workdir: str, initial_counts: Dict[str, float]):
    _cpu_only_jax()
    _record_process(workdir, 'counter')
    self._counter = counting.Counter()
    self._counter.increment(**initial_counts)
    self._by_source: Dict[str, Dict[str, float]] = {}

  def increment(self, source: str, counts: Dict[str, float]) -> Dict[str, float]:
    tally = self._by_source.setdefault(source, {})
    for key, value in counts.items():
      tally[key] = tally.get(key, 0) + value
    return self._counter.increment(**counts)

  def get_counts(self) -> Dict[str, float]:
    return self._counter.get_counts()

  def totals(self) -> Dict[str, Any]:
    return {'counts': self._counter.get_counts(), 'by_source': self._by_source}


class ReplayWorker:
  """The Reverb server. It loads the newest replay checkpoint in the workdir when it starts."""

  def __init__(self, run: RunSpec, port: int):
    _cpu_only_jax()
    _record_process(run.workdir, 'replay')
    checkpointer = checkpointing.RunCheckpointer(run.checkpoint_directory)
    # It listens on the IP this node has in the Ray cluster, the one that actors on any node
    # use, and on no other interface (127.0.0.1 for a Ray started by the launcher).
    self._host = ray.util.get_node_ip_address()
    self._server = reverb_bind.start_server(run.parts().builder.make_replay_tables(run.spec),
                                            self._host, port or None,
                                            checkpointer.replay_checkpointer())
    self._listening = sorted(reverb_bind.listening_addresses(self._server.port))

  def address(self) -> str:
    """host:port for clients on any node."""
    return f'{self._host}:{self._server.port}'

  def listening(self) -> List[str]:
    """The addresses the server listens on, from the node's socket table."""
    return self._listening


class LearnerWorker:
  """The learner, restored from the workdir's checkpoint; a threaded Ray actor.

  `run` steps in one thread while `get_variables` (for actors) and `stop` come in on others.
  """

  def __init__(self, run: RunSpec, replay, counter):
    _record_process(run.workdir, 'learner')
    self._run = run
    parts = run.parts(lambda: training.make_logger(run.workdir, 'learner', 1.0))
    self._client = reverb.Client(ray.get(replay.address.remote()))
    # Synced with the shared counter once a second, not on every step (one RPC per sync).
    self._counter = counting.Counter(RemoteCounter(counter, 'learner'), 'learner',
                                     time_delta=1.0)
    learner_key = jax.random.split(jax.random.PRNGKey(run.seed), 3)[0]  # As in the local run.
    builder = parts.builder
    self._learner = builder.make_learner(learner_key, parts.networks,
                                         builder.make_dataset_iterator(self._client),
                                         self._client, self._counter)
    self._checkpointer = checkpointing.RunCheckpointer(run.checkpoint_directory)
    restored = self._checkpointer.restore(self._learner.save())
    if restored is not None:
      self._learner.restore(restored.learner_state)
    self._restored = restored is not None
    self._lock = threading.Lock()
    self._stop = threading.Event()

  def ready(self) -> Dict[str, Any]:
    return {'device': devices.learner_device(), 'restored': self._restored}

  def get_variables(self, names: List[str]) -> List[Any]:
    return jax.device_get(self._learner.get_variables(names))

  def run(self) -> None:
    """Steps until `stop`, checkpointing on the schedule. A step blocks while replay is short."""
    period = 60 * self._run.schedule.checkpoint_every_minutes
    last_checkpoint = time.time()
    while not self._stop.is_set():
      self._learner.step()
      if time.time() - last_checkpoint > period and not self._stop.is_set():
        self._checkpoint()
        last_checkpoint = time.time()

  def stop(self) -> str:
    """Ends `run` after its current step and writes the final checkpoint; returns its path.

    Called from another thread, so it works while `run` waits inside a blocked replay sample.
    """
    self._stop.set()
    return self._checkpoint()

  def _checkpoint(self) -> str:
    with self._lock:
      # restore(save()) changes no count but makes the next read sync with the shared counter,
      # so the checkpoint holds every step counted so far, not a reading up to a second old.
      self._counter.restore(self._counter.save())
      path = self._checkpointer.save(self._learner.save(), self._counter.get_counts(),
                                     self._client)
    logging.info('Checkpoint %s', path)
    return path


class ActorWorker:
  """One training actor in Acme's EnvironmentLoop, writing to replay and logs/actor_<index>."""

  def __init__(self, index: int, run: RunSpec, replay, learner, counter):
    self._name = f'actor_{index}'
    _cpu_only_jax()
    _record_process(run.workdir, self._name)
    self._counter = counter
    # Seeded by the counts at start, so a restarted or resumed actor does not replay episodes.
    start = int(ray.get(counter.get_counts.remote())['actor_steps'])
    env_seed, key_seed = np.random.SeedSequence([run.seed, index, start]).generate_state(2)
    environment = environments.make_environment(run.task, int(env_seed))
    parts = run.parts()
    client = reverb.Client(ray.get(replay.address.remote()))
    actor = parts.builder.make_actor(jax.random.PRNGKey(key_seed), parts.behaviour_policy,
                                     parts.builder.make_adder(client),
                                     variable_source=RemoteVariableSource(learner))
    self._logger = training.make_logger(run.workdir, self._name)
    self._loop = EnvironmentLoop(
        environment, actor,
        counter=counting.Counter(RemoteCounter(counter, self._name), 'actor', time_delta=0.),
        logger=self._logger)

  def ready(self) -> bool:
    return True

  def run(self, num_steps: int) -> None:
    """Whole episodes until the shared `actor_steps` reaches `num_steps`."""
    counts = ray.get(self._counter.get_counts.remote())
    while counts['actor_steps'] < num_steps:
      counts = self._loop.run_episode()  # Its result holds the shared counts after the episode.
      self._logger.write(counts)


class EvaluatorWorker:
  """Evaluates at step 0 (fresh runs) and at every `eval_every` actor steps, then at the end."""

  def __init__(self, run: RunSpec, learner, counter):
    _cpu_only_jax()
    _record_process(run.workdir, 'evaluator')
    self._run = run
    self._counter = counter
    parts = run.parts()
    eval_key = jax.random.split(jax.random.PRNGKey(run.seed), 3)[2]  # As in the local run.
    environment = environments.make_environment(run.task, run.seed + training.EVAL_SEED_OFFSET)
    evaluator, observers = policy_stats.make_evaluator(parts, eval_key,
                                                       RemoteVariableSource(learner))
    self._loop = EnvironmentLoop(
        environment, evaluator,
        counter=counting.Counter(RemoteCounter(counter, 'evaluator'), 'evaluator',
                                 time_delta=0.),
        logger=training.make_logger(run.workdir, 'evaluator'), observers=observers)

  def ready(self) -> bool:
    return True

  def run(self, title: str) -> None:
    schedule = self._run.schedule
    steps = self._actor_steps()
    if steps == 0:
      self._evaluate(title)  # The untrained policy: the curve's starting point.
    while steps < schedule.num_steps:
      target = min((steps // schedule.eval_every + 1) * schedule.eval_every, schedule.num_steps)
      while steps < target:
        time.sleep(0.5)
        steps = self._actor_steps()
      self._evaluate(title)

  def _actor_steps(self) -> int:
    return int(ray.get(self._counter.get_counts.remote())['actor_steps'])

  def _evaluate(self, title: str) -> None:
    self._loop.run(num_episodes=self._run.schedule.eval_episodes)
    workdir = self._run.workdir
    plots.plot_learning_curve(os.path.join(workdir, 'logs', 'evaluator', 'logs.csv'),
                              os.path.join(workdir, 'learning_curve.png'), title)


# ------------------------------------------------------------------------------------------------
# The launcher.


def train(make_parts: Callable[..., Any], task: str, seed: int, workdir: str,
          schedule: training.Schedule, cluster: Cluster,
          title: Optional[str] = None) -> Dict[str, Any]:
  """`experiments.training.train`, with every part in its own Ray process.

  Args:
    make_parts: (environment spec, learner logger factory) -> baselines.AgentParts, with replay
      tables that rate-limit (not the single-process ones). Sent to every worker.
    task, seed, workdir, schedule, title: as in `experiments.training.train`.
    cluster: number of actors, Ray address, Reverb port; `validate(cluster)` first.

  Returns:
    The final counts with the workdir.

  Raises:
    Whatever a worker raised (a wpo.NonFiniteLossError from the learner is raised as itself);
    KeyboardInterrupt after writing a checkpoint.
  """
  _cpu_only_jax()  # This process only reads the spec and records the video.
  spec = specs.make_environment_spec(environments.make_environment(task, seed))
  run = RunSpec(make_parts, task, seed, workdir, spec, schedule)
  _start_ray(cluster)
  workers: List[Any] = []
  try:
    return _train(run, cluster, title or task, workers)
  finally:
    _shutdown(workers)


def _shutdown(workers: List[Any]) -> None:
  """Kills every worker (none restarts), then stops the Ray processes this launcher started."""
  for worker in workers:
    try:
      ray.kill(worker)
    except ray.exceptions.RayError as error:  # Already gone: nothing to stop.
      logging.info('ray.kill: %s', error)
  ray.shutdown()


def _loopback_only() -> None:
  """Makes the Ray node started here advertise and listen on 127.0.0.1 only.

  ray 2.60 on Linux rewrites a loopback `_node_ip_address` to the machine's routable IP, and its
  servers then listen on every interface. Its single-machine (macOS/Windows) mode keeps the node
  on loopback: the processes Ray starts read the environment variable, and this process, which
  imported ray already, reads the constant.
  """
  os.environ[_RAY_CLUSTER_MODE_ENV] = '0'
  ray_constants.ENABLE_RAY_CLUSTER = False


def _start_ray(cluster: Cluster) -> None:
  if cluster.ray_address is not None:
    ray.init(address=cluster.ray_address)
    return
  _loopback_only()
  os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')  # Nothing leaves this machine.
  with warnings.catch_warnings():
    # JAX warns on any fork; Ray's fork is a subprocess exec, which is safe.
    warnings.filterwarnings('ignore', message='os.fork', category=RuntimeWarning)
    # Logical CPUs: the learner and each actor reserve one; a small machine is oversubscribed.
    ray.init(num_cpus=max(os.cpu_count() or 1, cluster.num_actors + 1),
             include_dashboard=False, _node_ip_address='127.0.0.1',
             object_store_memory=LOCAL_OBJECT_STORE_BYTES)


def _check_resources(num_actors: int) -> None:
  """Fails at once where the cluster could never place the learner and the actors."""
  available = ray.cluster_resources().get('CPU', 0)
  if available < num_actors + 1:
    raise RuntimeError(f'The Ray cluster has {available:g} CPUs; the learner and '
                       f'--num_actors={num_actors} need {num_actors + 1}.')


def _this_node() -> Dict[str, Any]:
  node_id = ray.get_runtime_context().get_node_id()
  return next(n for n in ray.nodes() if n['NodeID'] == node_id)


def _train(run: RunSpec, cluster: Cluster, title: str, workers: List[Any]) -> Dict[str, Any]:
  _check_resources(cluster.num_actors)
  node = _this_node()
  here = scheduling_strategies.NodeAffinitySchedulingStrategy(node['NodeID'], soft=False)
  gpus = 1 if node['Resources'].get('GPU', 0) >= 1 else 0

  checkpointer = checkpointing.RunCheckpointer(run.checkpoint_directory)
  initial = {**{k: 0 for k in training.COUNT_KEYS + (WALLCLOCK,)},
             **(checkpointer.counts() or {})}
  counter = ray.remote(CounterWorker).options(
      num_cpus=0, scheduling_strategy=here).remote(run.workdir, initial)
  workers.append(counter)
  replay = ray.remote(ReplayWorker).options(
      num_cpus=0, scheduling_strategy=here,
      runtime_env={'env_vars': reverb_bind.preload_environment()}).remote(run,
                                                                          cluster.reverb_port)
  workers.append(replay)
  learner = ray.remote(LearnerWorker).options(
      num_cpus=1, num_gpus=gpus, scheduling_strategy=here,
      max_concurrency=cluster.num_actors + 4).remote(run, replay, counter)
  workers.append(learner)
  restartable = dict(max_restarts=ACTOR_MAX_RESTARTS, max_task_retries=-1)
  evaluator = ray.remote(EvaluatorWorker).options(
      num_cpus=0, scheduling_strategy=here, **restartable).remote(run, learner, counter)
  workers.append(evaluator)
  actors = [
      ray.remote(ActorWorker).options(num_cpus=1, scheduling_strategy='SPREAD',
                                      **restartable).remote(i, run, replay, learner, counter)
      for i in range(cluster.num_actors)]
  workers.extend(actors)

  launched = time.time()
  address = ray.get(replay.address.remote(), timeout=STARTUP_TIMEOUT_S)
  listening = ray.get(replay.listening.remote(), timeout=STARTUP_TIMEOUT_S)
  learner_info = ray.get(learner.ready.remote(), timeout=STARTUP_TIMEOUT_S)
  ray.get([w.ready.remote() for w in [evaluator] + actors], timeout=STARTUP_TIMEOUT_S)
  devices.announce(run.workdir, learner_info['device'])
  print(f'Ray {ray.get_runtime_context().gcs_address}, Reverb {address} (listening on '
        f'{", ".join(listening)}), learner on '
        f'{learner_info["device"]}, {cluster.num_actors} actors'
        f'{", resumed" if learner_info["restored"] else ""}; workers up in '
        f'{time.time() - launched:.0f} s.', flush=True)

  clock = _WallClock(counter)
  runs = {evaluator.run.remote(title): 'evaluator'}
  runs.update({a.run.remote(run.schedule.num_steps): f'actor_{i}' for i, a in enumerate(actors)})
  learner_run = learner.run.remote()
  start = time.time()
  try:
    _wait(runs, learner_run, counter, run.schedule, clock)
  except KeyboardInterrupt:
    clock.tick()
    _interrupted_checkpoint(learner)
    raise
  clock.tick()
  ray.get(learner.stop.remote())
  seconds = time.time() - start
  if run.schedule.video:
    # The same video as the local run's.
    training.record_video(run.workdir, run.task, run.seed, run.parts(),
                          RemoteVariableSource(learner))
  totals = ray.get(counter.totals.remote())
  _write_totals(run.workdir, totals, seconds, cluster.num_actors)
  return {**totals['counts'], 'workdir': run.workdir}


def _interrupted_checkpoint(learner) -> None:
  """The final checkpoint after Ctrl-C; a second Ctrl-C or a dead learner skips it."""
  try:
    print(f'Checkpoint written: {ray.get(learner.stop.remote())}', flush=True)
  except (KeyboardInterrupt, ray.exceptions.RayError) as error:
    print(f'Interrupted: no checkpoint written ({type(error).__name__}).', flush=True)


class _WallClock:
  """Adds this launch's wall-clock time to the shared count WALLCLOCK, as the local loop does.

  Being a count, it is checkpointed and sums over resumed launches, and every log row carries it.
  """

  def __init__(self, counter):
    self._counter, self._last = counter, time.time()

  def tick(self) -> None:
    now = time.time()
    ray.get(self._counter.increment.remote('launcher', {WALLCLOCK: now - self._last}))
    self._last = now


def _wait(runs: Dict[Any, str], learner_run, counter, schedule: training.Schedule,
          clock: _WallClock) -> None:
  """Until every actor and the evaluator return; raises whatever a worker raised."""
  pending = dict(runs)
  bar = tqdm.tqdm(total=schedule.num_steps, unit='step', smoothing=0.1, dynamic_ncols=True,
                  disable=not schedule.progress)
  try:
    while pending:
      done, _ = ray.wait(list(pending) + [learner_run], num_returns=1, timeout=1.0)
      for ref in done:
        if ref == learner_run:
          ray.get(ref)  # A learner error (e.g. a non-finite loss) is raised here.
          raise RuntimeError('The learner stopped before the actors finished.')
        pending.pop(ref)
        ray.get(ref)
      clock.tick()
      if not bar.disable:
        counts = ray.get(counter.get_counts.remote())
        bar.n = min(int(counts['actor_steps']), schedule.num_steps)
        bar.set_postfix_str(f'sgd {int(counts["learner_steps"])}', refresh=False)
        bar.refresh()
  finally:
    bar.close()


def _write_totals(workdir: str, totals: Dict[str, Any], seconds: float, num_actors: int) -> None:
  """logs/counter/totals.json: final counts, what each worker added, and rates for this launch."""
  by_source = totals['by_source']
  launch_steps = sum(v.get('actor_steps', 0) for k, v in by_source.items()
                     if k.startswith('actor_'))
  summary = {**totals, 'num_actors': num_actors, 'seconds': round(seconds, 2),
             'actor_steps_per_s': round(launch_steps / seconds, 2),
             'learner_steps_per_s': round(
                 by_source.get('learner', {}).get('learner_steps', 0) / seconds, 2)}
  directory = os.path.join(workdir, 'logs', 'counter')
  os.makedirs(directory, exist_ok=True)
  checkpointing.atomic_write(os.path.join(directory, 'totals.json'),
                             json.dumps(summary, indent=1, default=float).encode())
