"""The Ray runner: the same `ExperimentConfig` as `runner.local`, one Ray process per part.

  counter     acme `counting.Counter`, shared by all; it holds `actor_steps`, which stops the run
  replay      `reverb.Server` with the builder's tables: the real SampleToInsertRatio limiter and
              min_replay_size (the single-process run turns both off), so the learner's sampling
              paces the actors' inserts and vice versa
  learner     samples replay over gRPC, steps, serves `get_variables`, writes checkpoints
  actor_<i>   Acme `EnvironmentLoop`: its own environment and seed, the builder's actor fed by a
              `VariableClient` whose source is the learner's handle, and a Reverb adder
  evaluator   `runner.wiring.Evaluator` at the local run's cadence

Workers: `runner.ray_workers`; the cluster (start-up, loopback, joins, shutdown):
`runner.ray_cluster`. Actors reach replay over TCP at `host:port`, the host being the replay node's
IP as Ray knows it; the Reverb server listens on that address and no other (`agents.reverb_bind`),
and the learner through its Ray handle, so actors may run on any node. The counter, replay,
learner and evaluator run on the launcher's node, which therefore holds the checkpoints and the
learner/evaluator logs; actors are spread over the cluster and write `logs/actor_<i>/` there.

Faults: an actor or the evaluator whose process dies is restarted by Ray (`max_restarts`) and its
`run` call retried (`max_task_retries`); the new process builds a fresh environment, adder and
variable client and carries on until the counter reaches the budget. The counter, replay and
learner are not restarted: if one dies the run stops, and re-launching with the same workdir
resumes from the last checkpoint (learner state, counts, replay). Normal completion, errors and
Ctrl-C all end with every worker killed and `ray.shutdown()`.

Every worker writes `processes/<name>.json` (pid, host, node, whether it is a restart).
The step budget is checked between episodes, so the run ends with up to one extra episode per
actor beyond the budget, and evaluations fall at the first counter reading past each multiple of
eval_every rather than exactly on it; each evaluation plays one policy and logs that reading on
all its episodes (`wiring.Evaluator`), while the actors and the learner go on.
"""

import json
import os
import time
from typing import Any, Dict, List

import agents  # noqa: F401  (the hook that lets acme import; see agents/acme_compat.py)
from acme import specs
import jax
import ray

from agents import atomic_files
from agents import checkpointing
from agents import environments
from agents import reverb_bind
from runner import experiment
from runner import ray_cluster
from runner import ray_workers
from runner import wiring
from runner import workdir as workdir_lib

# Ray restarts an actor or the evaluator at most this many times; then the run fails.
ACTOR_MAX_RESTARTS = 10
# Workers (process start, imports, first compile) must be up within this many seconds.
STARTUP_TIMEOUT_S = 600.0


def run(config: experiment.ExperimentConfig, cluster: ray_cluster.Cluster) -> Dict[str, Any]:
  """`runner.local.run`, with every part in its own Ray process.

  Args:
    config: the experiment; its `make_parts` is sent to every worker.
    cluster: number of actors, Ray address, Reverb port; `ray_cluster.validate(cluster)` first.

  Returns:
    The final counts with the workdir.

  Raises:
    Whatever a worker raised (a wpo.NonFiniteLossError from the learner is raised as itself);
    KeyboardInterrupt after writing a checkpoint; checkpointing.CheckpointError where a stop's
    checkpoint could not be written (the last one written stays).
  """
  wiring.prepare_workdir(config)
  jax.config.update('jax_platforms', 'cpu')  # This process only reads the spec, records video.
  spec = specs.make_environment_spec(environments.make_environment(config.task, config.seed))
  # From Ray's start on, not only in the main loop: a SIGTERM during the workers' start-up stops
  # the launch through the `finally` (Ray turns it into a KeyboardInterrupt inside ray.get).
  workers: List[Any] = []
  with wiring.sigterm_raises_terminated():
    try:
      ray_cluster.start(cluster)
      return _run(config, spec, cluster, workers)
    finally:
      ray_cluster.shutdown(workers)


def _run(config, spec, cluster: ray_cluster.Cluster, workers: List[Any]) -> Dict[str, Any]:
  ray_cluster.check_resources(cluster.num_actors)
  placement = ray_cluster.Placement()
  here = placement.here

  def launch(cls, *args, env_vars=None, **options):
    # MUJOCO_GL as the entry point set it: the worker imports dm_control before it runs any code.
    env_vars = {**_rendering_environment(), **(env_vars or {})}
    worker = ray.remote(cls).options(runtime_env={'env_vars': env_vars}, **options).remote(*args)
    workers.append(worker)
    return worker

  counter = launch(ray_workers.CounterWorker, config,
                   wiring.initial_counts(wiring.checkpointer(config).counts(), config),
                   num_cpus=0, scheduling_strategy=here)
  replay = launch(ray_workers.ReplayWorker, config, spec, cluster.reverb_port, num_cpus=0,
                  scheduling_strategy=here, env_vars=reverb_bind.preload_environment())
  learner = launch(ray_workers.LearnerWorker, config, spec, replay, counter, num_cpus=1,
                   num_gpus=placement.learner_gpus, scheduling_strategy=here,
                   max_concurrency=cluster.num_actors + 4)
  restartable = dict(max_restarts=ACTOR_MAX_RESTARTS, max_task_retries=-1)
  evaluator = launch(ray_workers.EvaluatorWorker, config, spec, learner, counter, num_cpus=0,
                     scheduling_strategy=here, **restartable)
  actors = [launch(ray_workers.ActorWorker, i, config, spec, replay, learner, counter,
                   num_cpus=1, scheduling_strategy=placement.spread, **restartable)
            for i in range(cluster.num_actors)]

  launched = time.time()
  address = ray.get(replay.address.remote(), timeout=STARTUP_TIMEOUT_S)
  listening = ray.get(replay.listening.remote(), timeout=STARTUP_TIMEOUT_S)
  learner_info = ray.get(learner.ready.remote(), timeout=STARTUP_TIMEOUT_S)
  ray.get([w.ready.remote() for w in [evaluator] + actors], timeout=STARTUP_TIMEOUT_S)
  workdir_lib.announce_learner_device(config.workdir, learner_info['device'])
  print(f'Ray {ray_cluster.gcs_address()}, Reverb {address} (listening on '
        f'{", ".join(listening)}), {cluster.num_actors} actors'
        f'{", resumed" if learner_info["restored"] else ""}; workers up in '
        f'{time.time() - launched:.0f} s.', flush=True)

  clock = wiring.WallClock(lambda seconds: ray.get(
      counter.increment.remote('launcher', {workdir_lib.WALLCLOCK: seconds})))
  progress = wiring.Progress(config)
  runs = {evaluator.run.remote(): 'evaluator'}
  runs.update({a.run.remote(config.num_steps): f'actor_{i}' for i, a in enumerate(actors)})
  learner_run = learner.run.remote()

  def checkpoint(interrupted: bool) -> str:
    if not interrupted:
      clock.tick()
      return ray.get(learner.stop.remote())
    try:  # A second Ctrl-C or a dead learner leaves the checkpoint unwritten.
      clock.tick()
      return ray.get(learner.stop.remote())
    except (KeyboardInterrupt, ray.exceptions.RayError) as error:
      raise checkpointing.CheckpointError(
          f'interrupted, and no checkpoint written ({type(error).__name__}); re-running with '
          f'--workdir={config.workdir} resumes from the last one.') from error

  start = time.time()
  with wiring.final_checkpoint(checkpoint, progress):
    _wait(runs, learner_run, counter, progress, clock)
  seconds = time.time() - start
  if config.video:
    wiring.record_video(config, config.parts(spec, single_process=False),
                        ray_workers.RemoteVariableSource(learner))
  totals = ray.get(counter.totals.remote())
  _write_totals(config.workdir, totals, seconds, cluster.num_actors)
  return {**totals['counts'], 'workdir': config.workdir}


def _rendering_environment() -> Dict[str, str]:
  return {name: os.environ[name] for name in ('MUJOCO_GL',) if name in os.environ}


def _wait(runs: Dict[Any, str], learner_run, counter, progress: wiring.Progress,
          clock: wiring.WallClock) -> None:
  """Until every actor and the evaluator return; raises whatever a worker raised."""
  pending = dict(runs)
  while pending:
    done, _ = ray.wait(list(pending) + [learner_run], num_returns=1, timeout=1.0)
    for ref in done:
      if ref == learner_run:
        ray.get(ref)  # A learner error (e.g. a non-finite loss) is raised here.
        raise RuntimeError('The learner stopped before the actors finished.')
      pending.pop(ref)
      ray.get(ref)
    clock.tick()
    if progress.enabled:
      progress.update(ray.get(counter.get_counts.remote()))


def _write_totals(workdir: str, totals: Dict[str, Any], seconds: float, num_actors: int) -> None:
  """logs/counter/totals.json: final counts, what each worker added, and rates for this launch."""
  by_source = totals['by_source']
  launch_steps = sum(v.get('actor_steps', 0) for k, v in by_source.items()
                     if k.startswith('actor_'))
  summary = {**totals, 'num_actors': num_actors, 'seconds': round(seconds, 2),
             'actor_steps_per_s': round(launch_steps / seconds, 2),
             'learner_steps_per_s': round(
                 by_source.get('learner', {}).get('learner_steps', 0) / seconds, 2)}
  atomic_files.atomic_write(os.path.join(workdir, workdir_lib.TOTALS),
                            json.dumps(summary, indent=1, default=float).encode())
