"""The Ray cluster a distributed run uses: checks, start-up on loopback or join, shutdown.

Every use of Ray's private modules is here. A Ray started by the launcher listens on 127.0.0.1
only (`_loopback_only`); `--ray_address` joins a running cluster instead. All checks run before
Ray or any worker starts.
"""

import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import time
import warnings
from typing import Any, Dict, Iterator, List, Optional

from absl import logging
import ray
from ray._private import ray_constants
from ray._private import services as ray_services
from ray.util import scheduling_strategies

from agents import atomic_files
from runner import workdir as workdir_lib
from wpo_jax import devices

ADDRESS_TIMEOUT_S = 3.0
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


def _loopback_only() -> None:
  """Makes the Ray node started here advertise and listen on 127.0.0.1 only.

  ray 2.60 on Linux rewrites a loopback `_node_ip_address` to the machine's routable IP, and its
  servers then listen on every interface. Its single-machine (macOS/Windows) mode keeps the node
  on loopback: the processes Ray starts read the environment variable, and this process, which
  imported ray already, reads the constant.
  """
  os.environ[_RAY_CLUSTER_MODE_ENV] = '0'
  ray_constants.ENABLE_RAY_CLUSTER = False


def start(cluster: Cluster) -> None:
  """Joins `cluster.ray_address`, or starts Ray on this machine, on loopback only."""
  if cluster.ray_address is not None:
    with _sigterm_handler_kept():
      ray.init(address=cluster.ray_address)
    return
  _loopback_only()
  os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')  # Nothing leaves this machine.
  with warnings.catch_warnings(), _started_with_sigterm_blocked(), _sigterm_handler_kept():
    # JAX warns on any fork; Ray's fork is a subprocess exec, which is safe.
    warnings.filterwarnings('ignore', message='os.fork', category=RuntimeWarning)
    # Logical CPUs: the learner and each actor reserve one; a small machine is oversubscribed.
    ray.init(num_cpus=max(os.cpu_count() or 1, cluster.num_actors + 1),
             include_dashboard=False, _node_ip_address='127.0.0.1',
             object_store_memory=LOCAL_OBJECT_STORE_BYTES)


@contextlib.contextmanager
def _sigterm_handler_kept() -> Iterator[None]:
  """The launcher's SIGTERM handler stays in place across `ray.init`.

  Ray's driver installs a fatal-signal handler for SIGTERM that logs "SIGTERM received" and
  aborts (measured: exit status 134), so a SIGTERM during the workers' start-up killed the launcher
  without its clean-up. Re-installing Python's handler restores the launcher's own (in a run,
  `wiring.sigterm_raises_terminated`). Inside `_started_with_sigterm_blocked`, this restores it
  before a SIGTERM that came during `ray.init` is delivered.
  """
  handler = signal.getsignal(signal.SIGTERM)
  try:
    yield
  finally:
    if handler is not None:  # None: installed outside Python, which cannot re-install it.
      signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def _started_with_sigterm_blocked() -> Iterator[None]:
  """Processes started inside (Ray's GCS, raylet and agents, and through the raylet the workers)
  keep SIGTERM blocked, as Ray itself blocks SIGINT in them.

  The GCS and raylet join the launcher's process group, so a SIGTERM to the whole group
  (`timeout`, a batch system) stopped them while the launcher was writing its last checkpoint
  (measured: the GCS logged "received SIGTERM, shutting down" and the checkpoint failed). Now
  only the launcher takes it; `shutdown` stops them after the checkpoint.
  """
  previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
  try:
    yield
  finally:
    signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def shutdown(workers: List[Any]) -> None:
  """Kills every worker (none restarts), then stops the Ray processes this launcher started."""
  for worker in workers:
    try:
      ray.kill(worker)
    except ray.exceptions.RayError as error:  # Already gone: nothing to stop.
      logging.info('ray.kill: %s', error)
  ray.shutdown()


def check_resources(num_actors: int) -> None:
  """Fails at once where the cluster could never place the learner and the actors."""
  available = ray.cluster_resources().get('CPU', 0)
  if available < num_actors + 1:
    raise RuntimeError(f'The Ray cluster has {available:g} CPUs; the learner and '
                       f'--num_actors={num_actors} need {num_actors + 1}.')


class Placement:
  """Scheduling on the launcher's node (which holds the workdir's checkpoints) or anywhere."""

  def __init__(self):
    node_id = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n['NodeID'] == node_id)
    self.here = scheduling_strategies.NodeAffinitySchedulingStrategy(node_id, soft=False)
    self.spread = 'SPREAD'
    # The learner takes a GPU when the launcher's node has one.
    self.learner_gpus = 1 if node['Resources'].get('GPU', 0) >= 1 else 0


def gcs_address() -> str:
  return ray.get_runtime_context().gcs_address


def record_process(workdir: str, name: str) -> None:
  """processes/<name>.json: where this worker runs, so that operators (and tests) can find it."""
  with warnings.catch_warnings():  # Ray's property warns about an API it uses internally.
    warnings.simplefilter('ignore', DeprecationWarning)
    restarted = ray.get_runtime_context().was_current_actor_reconstructed
  info: Dict[str, Any] = {
      'name': name, 'pid': os.getpid(), 'host': socket.gethostname(),
      'node_ip': ray.util.get_node_ip_address(),
      'node_id': ray.get_runtime_context().get_node_id(), 'started': time.time(),
      'restarted': restarted, 'device': devices.learner_device()}
  atomic_files.atomic_write(os.path.join(workdir, workdir_lib.PROCESSES, f'{name}.json'),
                            json.dumps(info).encode())
