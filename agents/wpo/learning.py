"""WPO learner in Acme's Learner / VariableSource contract, around the pure wpo_jax step."""

import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import acme
from acme.utils import counting
from acme.utils import loggers
import jax
import numpy as np
import reverb

from agents.wpo import config as config_lib
from agents.wpo import networks as networks_lib
from wpo_jax import learning
from wpo_jax import pipeline


class NonFiniteLossError(RuntimeError):
  """The loss or a gradient became NaN/inf; the learner kept its last verified finite state."""


class WPOLearner(acme.Learner):
  """Draws [k·B] transitions from replay and takes k fused WPO SGD steps per `step()`.

  The device runs ahead of the host: batches are put on the device one call early (double
  buffering), and the metrics of `config.metrics_every` calls are fetched together. Until then a
  call's state is pending; everything that leaves the learner (`save`, `get_variables`, `steps`)
  first checks the pending calls, so a non-finite loss never reaches a checkpoint or an actor.
  On a non-finite loss the learner goes back to the state before the pending calls (the last
  verified one) and raises `NonFiniteLossError` from `step` and `save`.
  """

  def __init__(self,
               networks: networks_lib.WPONetworks,
               config: config_lib.WPOConfig,
               random_key: jax.Array,
               iterator: Iterator[reverb.ReplaySample],
               counter: Optional[counting.Counter] = None,
               logger: Optional[loggers.Logger] = None):
    self._config = config
    improvement = None
    if config.policy_improvement == 'mpo':
      # Imported only for MPO: it pulls in TensorFlow Probability.
      from agents.wpo import mpo  # pylint: disable=g-import-not-at-top
      improvement = mpo.make_mpo_improvement(config.num_action_samples)
    pure = learning.make_learner(networks.networks, networks.action_dim,
                                 config.learner_config(), improvement)
    self._verified = pure.init(random_key, networks.observation_dim)
    self._state = self._verified  # The newest state: ahead of `_verified` by `_pending`.
    # Per pending call: its metrics (device arrays, [k] each) and its wall-clock seconds.
    self._pending: List[Tuple[Dict[str, jax.Array], float]] = []
    self._error: Optional[NonFiniteLossError] = None
    # `step` runs in one thread while `get_variables` (actors) and `save` may come in on others.
    # Re-entrant: a caller may hold it across several reads to see one state (tests do).
    self._lock = threading.RLock()
    self._fused_step = jax.jit(learning.fuse_sgd_steps(pure.sgd_step))
    self._batches = pipeline.device_prefetch(map(self._fused_batches, iterator))
    self._counter = counter or counting.Counter()
    self._logger = logger or loggers.make_default_logger('learner', asynchronous=True,
                                                         serialize_fn=None)
    self._last_step_time = None

  def _fused_batches(self, sample: reverb.ReplaySample) -> learning.Transition:
    """A replay sample of k·B transitions as [k, B, ...] batches for the fused step."""
    data = sample.data
    k, batch = self._config.num_sgd_steps_per_step, self._config.batch_size
    fields = (data.observation, data.action, data.reward, data.discount,
              data.next_observation)
    return learning.Transition(*(np.reshape(x, (k, batch) + x.shape[1:]) for x in fields))

  def step(self):
    if self._error is not None:
      raise self._error
    # Outside the lock: the sample may wait for actors, who need `get_variables` meanwhile.
    batches = next(self._batches)
    with self._lock:
      self._state, metrics = self._fused_step(self._state, batches)  # Returns at once.
      now = time.time()
      elapsed = now - self._last_step_time if self._last_step_time else 0.0
      self._last_step_time = now
      self._pending.append((metrics, elapsed))
      if len(self._pending) >= self._config.metrics_every:
        self._check_pending()
    if self._error is not None:
      raise self._error

  def _check_pending(self) -> None:
    """Fetches the pending calls' metrics: logs them, or on a non-finite loss goes back and fails.

    Called with the lock held. One log row per call, with that call's metrics as in the plain
    loop; `sgd_steps_per_s` is the rate over the calls fetched together.
    """
    if not self._pending:
      return
    metrics = jax.device_get([m for m, _ in self._pending])
    seconds = [s for _, s in self._pending]
    self._pending = []
    num_steps = self._config.num_sgd_steps_per_step
    bad = [i for i, m in enumerate(metrics) if not np.all(m['finite'])]
    if bad:
      first = int(self._verified.steps) + bad[0] * num_steps
      last_metrics = {k: float(v[-1]) for k, v in metrics[bad[0]].items() if k != 'finite'}
      self._error = NonFiniteLossError(
          f'WPO loss or gradient became non-finite within learner steps {first + 1}..'
          f'{first + num_steps} (last metrics: {last_metrics}). The learner kept its last '
          f'verified finite state, at step {int(self._verified.steps)}; lower learning_rate or '
          'max_grad_norm, or check the rewards.')
      self._state = self._verified
      return
    self._verified = self._state
    timed = [s for s in seconds if s > 0]
    # Present from the first row (as NaN) so that CSV columns stay fixed.
    rate = num_steps * len(timed) / sum(timed) if timed else float('nan')
    for call_metrics, elapsed in zip(metrics, seconds):
      counts = self._counter.increment(steps=num_steps, walltime=elapsed)
      summary = {k: float(np.mean(v)) for k, v in call_metrics.items() if k != 'finite'}
      self._logger.write({**counts, **summary, 'sgd_steps_per_s': rate})

  def _checked_state(self) -> learning.TrainingState:
    with self._lock:
      self._check_pending()
      return self._verified

  def get_variables(self, names: List[str]) -> List[Any]:
    params = self._checked_state().params
    variables = {'policy': params.policy, 'critic': params.critic}
    return [variables[name] for name in names]

  def save(self) -> learning.TrainingState:
    """The verified state; raises NonFiniteLossError instead where a pending call failed."""
    state = self._checked_state()
    if self._error is not None:
      raise self._error
    return jax.device_get(state)

  def restore(self, state: learning.TrainingState):
    with self._lock:
      self._verified = self._state = jax.device_put(state)
      self._pending = []
      self._error = None

  @property
  def steps(self) -> int:
    """SGD steps of the verified state (pending calls are checked first)."""
    return int(self._checked_state().steps)
