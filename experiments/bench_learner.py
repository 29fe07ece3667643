"""Learner throughput: SGD steps/s of the fused WPO step, alone and behind the input pipeline.

Imports only the pure core (wpo_jax) and numpy, so that it runs on a GPU image with current JAX,
Flax, Optax and chex but no TensorFlow, Reverb or Acme (`bash experiments/gpu_bench.sh`).

Prints one JSON line per case. A case is k (SGD steps fused per call), batch size B, critic
layers, matmul precision ('default' or 'bfloat16') and pipeline:
  pure_step   the jitted k-step call on batches already on the device;
  end_to_end  what WPOLearner does per call: the next [k·B] sample from a host (numpy) iterator,
              reshaped to [k, B, ...], put on the device one call ahead (wpo_jax.pipeline), the
              fused step, and the `finite` flags fetched every --metrics_every calls; its
              `vs_pure_step` is its rate over the pure step's, the pipeline's overhead.
`flop_fraction` is the achieved FLOP/s (XLA's cost analysis of one SGD step × steps/s) over
--peak_tflops. Policy 256×3, N=20 action samples and a walker-sized problem (O=24, D=6) unless
flags say otherwise.

  python -m experiments.bench_learner [--cases=cpu|cpu_preset|gpu|paper|smoke] [--seconds=10]
"""

import itertools
import json
import platform
import time
from typing import Any, Dict, Iterator, List, NamedTuple, Tuple

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from wpo_jax import devices
from wpo_jax import learning
from wpo_jax import networks
from wpo_jax import pipeline

# Dense FP32 on the CUDA cores of an H100 / H200 SXM (NVIDIA's data sheet; no tensor cores).
# The "FLOP limit near 7,000 SGD steps/s" at paper scale is against this figure. JAX's
# default f32 matmuls on these GPUs may run as TF32 on tensor cores (dense peak ~495 TFLOP/s),
# and bf16 ones have a dense peak of ~989 TFLOP/s: divide the fraction by 7.4 or 14.8 for those.
H100_FP32_TFLOPS = 67.0


class Case(NamedTuple):
  fused_steps: int
  batch_size: int
  critic_layers: Tuple[int, ...]
  precision: str  # 'default' or 'bfloat16'.
  pipeline: str  # 'pure_step' or 'end_to_end'.
  policy_layers: Tuple[int, ...] = networks.DEFAULT_POLICY_LAYERS


def _grid(fused, batches, critics, precisions, pipelines, policy=networks.DEFAULT_POLICY_LAYERS):
  return [Case(k, b, c, p, e, policy)
          for b, c, p, k, e in itertools.product(batches, critics, precisions, fused, pipelines)]


PIPELINES = ('pure_step', 'end_to_end')
PAPER_CRITIC, WIDE_CRITIC = networks.DEFAULT_CRITIC_LAYERS, (512, 512, 256)
CASES = {
    # The target first: paper scale (policy and critic 256×3, B=256).
    'paper': _grid((1, 8, 64), (256,), (PAPER_CRITIC,), ('default', 'bfloat16'), PIPELINES),
    'cpu': _grid((1, 8), (256,), (PAPER_CRITIC,), ('default',), PIPELINES),
    # agents.wpo's `cpu` preset (256×2, k=4; compare's runs take k=1) at B=128 and 256; pass
    # --num_action_samples=8 and the task's sizes (cartpole: --observation_dim=5 --action_dim=1).
    'cpu_preset': _grid((1, 4), (128, 256), ((256, 256),), ('default',), PIPELINES,
                        policy=(256, 256)),
    # Seconds on any machine: for tests/test_learner_pipeline.py.
    'smoke': _grid((2,), (16,), ((32, 32),), ('bfloat16',), PIPELINES, policy=(32, 32)),
}
CASES['gpu'] = CASES['paper'] + [
    case for case in _grid((1, 8, 64), (256, 1024), (PAPER_CRITIC, WIDE_CRITIC),
                           ('default', 'bfloat16'), PIPELINES) if case not in CASES['paper']]

_CASES = flags.DEFINE_enum('cases', 'cpu', sorted(CASES), 'Which set of cases to run.')
_SECONDS = flags.DEFINE_float('seconds', 10.0, 'Timed wall-clock per case.')
_SAMPLES = flags.DEFINE_integer('num_action_samples', 20, 'N, actions per state.')
_OBS = flags.DEFINE_integer('observation_dim', 24, 'Observation size O.')
_ACT = flags.DEFINE_integer('action_dim', 6, 'Action size D.')
_METRICS_EVERY = flags.DEFINE_integer(
    'metrics_every', 8, 'end_to_end: fetch the finite flags once per this many calls '
    '(WPOConfig.metrics_every).')
_PEAK = flags.DEFINE_float('peak_tflops', H100_FP32_TFLOPS,
                           'The FLOP/s limit flop_fraction is relative to, in TFLOP/s.')


def _host_samples(rng: np.random.Generator, num_transitions: int, observation_dim: int,
                  action_dim: int) -> learning.Transition:
  """One replay sample's worth of flat [k·B] transitions as numpy arrays, as Reverb gives them."""
  shape = (num_transitions,)
  return learning.Transition(
      observation=rng.normal(size=shape + (observation_dim,)).astype(np.float32),
      action=rng.uniform(-1.0, 1.0, size=shape + (action_dim,)).astype(np.float32),
      reward=rng.uniform(size=shape).astype(np.float32),
      discount=np.full(shape, 0.99**4, np.float32),
      next_observation=rng.normal(size=shape + (observation_dim,)).astype(np.float32))


def _fused_batches(samples: Iterator[learning.Transition], k: int,
                   batch_size: int) -> Iterator[learning.Transition]:
  for sample in samples:
    yield learning.Transition(*(np.reshape(x, (k, batch_size) + x.shape[1:]) for x in sample))


_FLOPS: Dict[Case, float] = {}


def _flops_per_step(case: Case, sgd_step, state, batch) -> float:
  """XLA's FLOP count of one (unfused) SGD step; a scan's body may be counted once, not k times."""
  key = case._replace(fused_steps=0, pipeline='')  # The same step whatever k and pipeline.
  if key not in _FLOPS:
    cost = jax.jit(sgd_step).lower(state, batch).compile().cost_analysis()
    if isinstance(cost, list):  # jax <= 0.4.x: one dict per computation.
      cost = cost[0]
    _FLOPS[key] = float(cost['flops'])
  return _FLOPS[key]


def _timed_calls(call, seconds: float, sync_every: int) -> Tuple[int, float]:
  """Calls `call()` for about `seconds`; syncs on its result every `sync_every` calls."""
  calls = 0
  start = time.perf_counter()
  result = None
  while time.perf_counter() - start < seconds:
    result = call()
    calls += 1
    if calls % sync_every == 0:
      jax.block_until_ready(result)
  jax.block_until_ready(result)
  return calls, time.perf_counter() - start


def measure(case: Case, seconds: float) -> Dict[str, Any]:
  """SGD steps/s of `case` over about `seconds` of wall-clock (after a compiling first call)."""
  k, batch_size = case.fused_steps, case.batch_size
  config = learning.LearnerConfig(num_action_samples=_SAMPLES.value)
  nets = networks.make_networks(_ACT.value, case.policy_layers, case.critic_layers)
  learner = learning.make_learner(nets, _ACT.value, config)
  precision = None if case.precision == 'default' else case.precision
  rng = np.random.default_rng(0)
  # A few distinct samples, cycled: the host iterator costs what handing out a sample costs.
  samples = [_host_samples(rng, k * batch_size, _OBS.value, _ACT.value) for _ in range(4)]
  with jax.default_matmul_precision(precision):
    state = learner.init(jax.random.PRNGKey(0), _OBS.value)
    one_batch = jax.tree_util.tree_map(lambda x: x[0], next(_fused_batches(samples, k,
                                                                           batch_size)))
    flops = _flops_per_step(case, learner.sgd_step, state, one_batch)
    fused = jax.jit(learning.fuse_sgd_steps(learner.sgd_step), donate_argnums=0)
    batches = pipeline.device_prefetch(_fused_batches(itertools.cycle(samples), k, batch_size))
    compile_start = time.perf_counter()
    state, metrics = fused(state, next(batches))
    jax.block_until_ready(state)
    compile_seconds = time.perf_counter() - compile_start
    finite: List[bool] = []

    if case.pipeline == 'pure_step':
      resident = next(batches)

      def call():
        nonlocal state, metrics
        state, metrics = fused(state, resident)
        return state

      calls, elapsed = _timed_calls(call, seconds, sync_every=8)
    else:
      pending: List[jax.Array] = []

      def call():
        nonlocal state, metrics
        state, metrics = fused(state, next(batches))
        pending.append(metrics['finite'])
        if len(pending) == _METRICS_EVERY.value:
          finite.append(bool(np.all(jax.device_get(pending))))
          pending.clear()
        return state

      calls, elapsed = _timed_calls(call, seconds, sync_every=_METRICS_EVERY.value)
  finite.append(bool(jnp.all(metrics['finite'])))
  steps_per_s = calls * k / elapsed
  return {
      'benchmark': 'wpo_learner',
      'pipeline': case.pipeline,
      'fused_steps': k,
      'batch_size': batch_size,
      'critic_layers': '-'.join(map(str, case.critic_layers)),
      'policy_layers': '-'.join(map(str, case.policy_layers)),
      'precision': case.precision,
      'sgd_steps_per_s': round(steps_per_s, 2),
      'gflop_per_step': round(flops / 1e9, 3),
      'flop_fraction': float(f'{flops * steps_per_s / (_PEAK.value * 1e12):.3g}'),
      'peak_tflops': _PEAK.value,
      'sgd_steps': calls * k,
      'seconds': round(elapsed, 2),
      'first_call_seconds': round(compile_seconds, 2),
      'all_finite': all(finite),
      'num_action_samples': _SAMPLES.value,
      'observation_dim': _OBS.value,
      'action_dim': _ACT.value,
      'device': devices.learner_device(),
      'jax': jax.__version__,
      'host': platform.processor() or platform.machine(),
  }


def main(argv):
  del argv
  pure_rates = {}
  for case in CASES[_CASES.value]:
    result = measure(case, _SECONDS.value)
    if case.pipeline == 'pure_step':
      pure_rates[case._replace(pipeline='')] = result['sgd_steps_per_s']
    else:
      pure = pure_rates.get(case._replace(pipeline=''))
      result['vs_pure_step'] = round(result['sgd_steps_per_s'] / pure, 3) if pure else None
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
  app.run(main)
