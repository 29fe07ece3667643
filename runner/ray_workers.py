"""The Ray workers of a distributed run, each wrapping the shared pieces of `runner.wiring`.

Plain classes; `runner.distributed` makes them Ray actors with the options they need. Ray handles
stand in for the Acme objects the pieces expect: `RemoteCounter` for the run's `Counter`,
`RemoteVariableSource` for the learner.
"""

import threading
import time
from typing import Any, Dict, List

import agents  # noqa: F401  (the hook that lets acme import; see agents/acme_compat.py)
from acme import core
from acme import specs
from acme.environment_loop import EnvironmentLoop
from acme.utils import counting
import jax
import numpy as np
import ray
import reverb

from agents import acme_compat
from agents import environments
from agents import reverb_bind
from runner import evaluation_schedule
from runner import experiment
from runner import ray_cluster
from runner import wiring
from wpo_jax import devices


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


def _cpu_only_jax() -> None:
  """Only the learner may use a GPU: JAX elsewhere would claim most of the GPU's memory."""
  jax.config.update('jax_platforms', 'cpu')


def _start(config: experiment.ExperimentConfig, name: str, cpu_only: bool = True) -> None:
  """What every worker does first: dm-acme's patches (the process set-up the entry point made in
  the launcher), its process record, and JAX on the CPU unless it is the learner."""
  acme_compat.apply()
  if cpu_only:
    _cpu_only_jax()  # Before the process record asks JAX for its device.
  ray_cluster.record_process(config.workdir, name)


class CounterWorker:
  """The run's one `counting.Counter`, plus what each worker added during this launch."""

  def __init__(self, config: experiment.ExperimentConfig, initial_counts: Dict[str, float]):
    _start(config, 'counter')
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

  def __init__(self, config: experiment.ExperimentConfig, spec: specs.EnvironmentSpec,
               port: int):
    _start(config, 'replay')
    # It listens on the IP this node has in the Ray cluster, the one that actors on any node
    # use, and on no other interface (127.0.0.1 for a Ray started by the launcher).
    self._host = ray.util.get_node_ip_address()
    tables = config.parts(spec, single_process=False).builder.make_replay_tables(spec)
    self._server = reverb_bind.start_server(
        tables, self._host, port or None, wiring.checkpointer(config).replay_checkpointer())
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

  def __init__(self, config: experiment.ExperimentConfig, spec: specs.EnvironmentSpec, replay,
               counter):
    _start(config, 'learner', cpu_only=False)
    self._config = config
    parts = config.parts(spec, single_process=False, learner_logs=True)
    self._client = reverb.Client(ray.get(replay.address.remote()))
    # Synced with the shared counter once a second, not on every step (one RPC per sync).
    self._counter = counting.Counter(RemoteCounter(counter, 'learner'), 'learner',
                                     time_delta=1.0)
    self._learner, restored = wiring.make_learner(config, parts, self._client, self._counter)
    self._restored = restored is not None
    self._checkpointer = wiring.checkpointer(config)
    self._lock = threading.Lock()
    self._stop = threading.Event()

  def ready(self) -> Dict[str, Any]:
    return {'device': devices.learner_device(), 'restored': self._restored}

  def get_variables(self, names: List[str]) -> List[Any]:
    return jax.device_get(self._learner.get_variables(names))

  def run(self) -> None:
    """Steps until `stop`, checkpointing on the schedule. A step blocks while replay is short."""
    timer = wiring.CheckpointTimer(self._config)
    while not self._stop.is_set():
      self._learner.step()
      if timer.due() and not self._stop.is_set():
        self._checkpoint()
        timer.reset()

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
      return wiring.save_checkpoint(self._checkpointer, self._learner,
                                    self._counter.get_counts(), self._client)


class ActorWorker:
  """One training actor in Acme's EnvironmentLoop, writing to replay and logs/actor_<index>."""

  def __init__(self, index: int, config: experiment.ExperimentConfig,
               spec: specs.EnvironmentSpec, replay, learner, counter):
    self._name = f'actor_{index}'
    _start(config, self._name)
    self._counter = RemoteCounter(counter, self._name)
    # Seeded by the counts at start, so a restarted or resumed actor does not replay episodes.
    start = int(self._counter.get_counts()['actor_steps'])
    env_seed, key_seed = np.random.SeedSequence([config.seed, index, start]).generate_state(2)
    environment = environments.make_environment(config.task, int(env_seed))
    client = reverb.Client(ray.get(replay.address.remote()))
    actor = wiring.make_actor(config.parts(spec, single_process=False),
                              jax.random.PRNGKey(key_seed), client,
                              RemoteVariableSource(learner))
    self._logger = config.logger(self._name)
    self._loop = EnvironmentLoop(
        environment, actor,
        counter=counting.Counter(self._counter, 'actor', time_delta=0.),
        logger=self._logger)

  def ready(self) -> bool:
    return True

  def run(self, num_steps: int) -> None:
    """Whole episodes until the shared `actor_steps` reaches `num_steps`."""
    counts = self._counter.get_counts()
    while counts['actor_steps'] < num_steps:
      counts = self._loop.run_episode()  # Its result holds the shared counts after the episode.
      self._logger.write(counts)


class EvaluatorWorker:
  """`wiring.Evaluator` at the shared cadence, reading the actors' progress from the counter."""

  def __init__(self, config: experiment.ExperimentConfig, spec: specs.EnvironmentSpec, learner,
               counter):
    _start(config, 'evaluator')
    self._config, self._counter = config, RemoteCounter(counter, 'evaluator')
    self._evaluator = wiring.Evaluator(config, config.parts(spec, single_process=False),
                                       RemoteVariableSource(learner), self._counter)

  def ready(self) -> bool:
    return True

  def run(self) -> None:
    evaluation_schedule.run_evaluations(self._config, self._counter, self._evaluator.evaluate,
                                        self._wait_for_actors)

  def _wait_for_actors(self, steps: int) -> None:
    while self._counter.get_counts()['actor_steps'] < steps:
      time.sleep(0.5)
