"""σ statistics of the evaluated policy, logged with every evaluation episode.

`make_evaluator(parts, key, variables)` builds the evaluation actor exactly as
`parts.builder.make_actor` does, acting with one policy per evaluation (`VariablesPerEvaluation`),
plus the EnvironmentLoop observers to pass with it. For WPO and
MPO (whose networks are `agents.wpo.WPONetworks`) that is one `PolicyStddevObserver`: at the end
of each episode it evaluates the policy's σ at every state the episode visited, with the
parameters the evaluator acted with, and adds

  policy_stddev_mean, policy_stddev_min, policy_stddev_max

to the episode's log row (the learner logs the same names over its batches). σ is each
distribution's `stddev` field, as the learner reports it: the Gaussian's σ, the pre-squash σ of a
tanh-Gaussian, every component's σ of a mixture. Other methods get no observers.
"""

from typing import Any, Callable, Dict, List, Sequence, Tuple

from acme import core
from acme.utils.observers import base as observers_base
import dm_env
import jax
import numpy as np

from agents import wpo

STDDEV_KEYS = ('policy_stddev_mean', 'policy_stddev_min', 'policy_stddev_max')


class VariablesPerEvaluation(core.VariableSource):
  """`source`'s variables, fetched at the first request after each `new_evaluation()` and then
  handed out unchanged, so every episode of an evaluation plays one policy and `current('policy')`
  is the one the evaluator acts with.
  """

  def __init__(self, source: core.VariableSource):
    self._source = source
    self._fetched: Dict[str, Any] = {}

  def new_evaluation(self) -> None:
    self._fetched = {}

  def get_variables(self, names: Sequence[str]) -> List[Any]:
    missing = [name for name in names if name not in self._fetched]
    if missing:
      self._fetched.update(zip(missing, self._source.get_variables(missing)))
    return [self._fetched[name] for name in names]

  def current(self, name: str) -> Any:
    """This evaluation's variables `name` (fetched now if nothing asked for them yet)."""
    return self.get_variables([name])[0]


class PolicyStddevObserver(observers_base.EnvLoopObserver):
  """σ mean, min and max over the states of one episode (see the module docstring).

  Args:
    stddev_fn: (policy params, observations [T, O]) -> σ [T, ..., D].
    params_fn: () -> the policy parameters used for the episode, read at its first step (after
      the actor's own update).
  """

  def __init__(self, stddev_fn: Callable[[Any, np.ndarray], Any], params_fn: Callable[[], Any]):
    self._stddev_fn = stddev_fn
    self._params_fn = params_fn
    self._params = None
    self._observations: List[np.ndarray] = []

  def observe_first(self, env: dm_env.Environment, timestep: dm_env.TimeStep) -> None:
    del env
    self._params = self._params_fn()
    self._observations = [np.asarray(timestep.observation)]

  def observe(self, env: dm_env.Environment, timestep: dm_env.TimeStep,
              action: np.ndarray) -> None:
    del env, action
    if not timestep.last():  # The last observation is never acted on.
      self._observations.append(np.asarray(timestep.observation))

  def get_metrics(self) -> Dict[str, float]:
    stddev = np.asarray(self._stddev_fn(self._params, np.stack(self._observations)))
    return dict(zip(STDDEV_KEYS, (float(stddev.mean()), float(stddev.min()),
                                  float(stddev.max()))))


def stddev_function(networks: wpo.WPONetworks) -> Callable[[Any, np.ndarray], Any]:
  """(params, observations [T, O]) -> σ of the policy at each, jitted."""
  return jax.jit(lambda params, observation: networks.networks.policy.apply(
      params, observation).stddev)


def make_evaluator(parts: Any, key: jax.Array, variables: VariablesPerEvaluation,
                   ) -> Tuple[core.Actor, Tuple[observers_base.EnvLoopObserver, ...]]:
  """The evaluation actor of `parts` (agents.methods.AgentParts) and its loop's observers."""
  actor = parts.builder.make_actor(key, parts.evaluation_policy, variable_source=variables)
  if not isinstance(parts.networks, wpo.WPONetworks):
    return actor, ()
  observer = PolicyStddevObserver(stddev_function(parts.networks),
                                  lambda: variables.current('policy'))
  return actor, (observer,)
