"""WPO learner in Acme's Learner / VariableSource contract, around the pure wpo_jax step."""

import time
from typing import Any, Iterator, List, Optional

import acme
from acme.utils import counting
from acme.utils import loggers
import jax
import numpy as np
import reverb

from agents.wpo import config as config_lib
from agents.wpo import networks as networks_lib
from wpo_jax import learning


class NonFiniteLossError(RuntimeError):
  """The loss or a gradient became NaN/inf; the learner kept its last finite state."""


class WPOLearner(acme.Learner):
  """Draws [k·B] transitions from replay and takes k fused WPO SGD steps per `step()`."""

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
    self._state = pure.init(random_key, networks.observation_dim)
    self._fused_step = jax.jit(learning.fuse_sgd_steps(pure.sgd_step))
    self._iterator = iterator
    self._counter = counter or counting.Counter()
    self._logger = logger or loggers.make_default_logger('learner', asynchronous=True,
                                                         serialize_fn=None)
    self._last_step_time = None

  def _next_batches(self) -> learning.Transition:
    """Next replay sample as [k, B, ...] batches for the fused step."""
    data = next(self._iterator).data
    k, batch = self._config.num_sgd_steps_per_step, self._config.batch_size
    fields = (data.observation, data.action, data.reward, data.discount,
              data.next_observation)
    return learning.Transition(*(np.reshape(x, (k, batch) + x.shape[1:]) for x in fields))

  def step(self):
    batches = self._next_batches()
    state, metrics = self._fused_step(self._state, batches)
    metrics = jax.device_get(metrics)
    if not np.all(metrics.pop('finite')):
      raise NonFiniteLossError(
          f'WPO loss or gradient became non-finite within learner steps '
          f'{int(self._state.steps) + 1}..{int(self._state.steps) + batches.reward.shape[0]} '
          f'(last metrics: { {k: float(v[-1]) for k, v in metrics.items()} }). The learner kept '
          'its last finite state; lower learning_rate or max_grad_norm, or check the rewards.')
    self._state = state

    now = time.time()
    elapsed = now - self._last_step_time if self._last_step_time else 0.0
    self._last_step_time = now
    num_steps = self._config.num_sgd_steps_per_step
    counts = self._counter.increment(steps=num_steps, walltime=elapsed)
    summary = {k: float(np.mean(v)) for k, v in metrics.items()}
    # Present from the first row (as NaN) so that CSV columns stay fixed.
    summary['sgd_steps_per_s'] = num_steps / elapsed if elapsed > 0 else float('nan')
    self._logger.write({**counts, **summary})

  def get_variables(self, names: List[str]) -> List[Any]:
    params = self._state.params
    variables = {'policy': params.policy, 'critic': params.critic}
    return [variables[name] for name in names]

  def save(self) -> learning.TrainingState:
    return jax.device_get(self._state)

  def restore(self, state: learning.TrainingState):
    self._state = jax.device_put(state)

  @property
  def steps(self) -> int:
    return int(self._state.steps)
