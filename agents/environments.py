"""DeepMind Control Suite environments, prepared for the WPO agent.

`make_environment('walker:walk', seed)` returns a `dm_env.Environment` whose
  observation is one flat float32 vector [O] (the suite's observation dict, concatenated in spec
    order, each entry flattened),
  action is a float32 vector [A] in the canonical box [-1, 1], mapped linearly onto the task's
    real bounds and clipped to them,
  reward is a float32 scalar (None on the first step, as dm_env specifies),
  discount is the task's own, passed through unchanged.

Valid names are `domain:task` pairs: the 28 Control Suite benchmark tasks, the humanoid_CMU and dog
tasks (`TASKS`), plus whatever was added with `register_task`. Names are checked before anything
is loaded, so a typo fails at once with a suggestion and the list of valid names.

Acme's wrappers do the canonical action box and single precision; the flattening (spec order)
and the combined humanoid are written here, as dm-acme 0.4.0 has no equivalent.
"""

import difflib
from typing import Callable, Dict, Mapping, Tuple

import dm_env
from dm_env import specs
import numpy as np

from acme.wrappers import canonical_spec
from acme.wrappers import single_precision
from dm_control import suite

# Builds a raw environment from a seed. Its observation may be a dict of arrays or one array and
# its action spec must be bounded with finite bounds; `make_environment` adds the wrappers.
TaskConstructor = Callable[[int], dm_env.Environment]

# Domains outside the benchmark set that the agent is meant to handle (high-dimensional bodies).
_EXTRA_DOMAINS = ('humanoid_CMU', 'dog')


def _task_name(domain: str, task: str) -> str:
  return f'{domain}:{task}'


def _suite_tasks() -> Tuple[str, ...]:
  """The benchmark tasks, then every task of the extra domains, in the suite's order."""
  benchmark = tuple(_task_name(d, t) for d, t in suite.BENCHMARKING)
  extra = tuple(_task_name(d, t) for d, t in suite.ALL_TASKS if d in _EXTRA_DOMAINS)
  return benchmark + extra


# The built-in task names; tasks added with `register_task` are not in here (see `task_names`).
TASKS: Tuple[str, ...] = _suite_tasks()

# Name -> constructor for tasks that are not plain `suite.load(domain, task)` calls.
_REGISTRY: Dict[str, TaskConstructor] = {}


def register_task(name: str, constructor: TaskConstructor) -> None:
  """Makes `name` a valid task, built by `constructor(seed)` and then wrapped as usual.

  Raises ValueError if `name` is empty or already a built-in or registered task, so that one task
  cannot silently shadow another.
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f'A task name must be a non-empty string, got {name!r}.')
  if name in TASKS or name in _REGISTRY:
    raise ValueError(f'Task {name!r} is already defined.')
  _REGISTRY[name] = constructor


def task_names() -> Tuple[str, ...]:
  """Every valid name: `TASKS` followed by the registered ones, in registration order."""
  return TASKS + tuple(_REGISTRY)


def validate_task_name(name: str) -> None:
  """Raises ValueError unless `name` is valid; the message offers a close match and all names."""
  valid = task_names()
  if isinstance(name, str) and name in valid:
    return
  message = f'Unknown task name {name!r}.'
  if isinstance(name, str):
    close = difflib.get_close_matches(name, valid, n=1)
    if close:
      message += f' Did you mean {close[0]!r}?'
  message += ' Valid names: ' + ', '.join(valid) + '.'
  raise ValueError(message)


def _load_suite_task(name: str, seed: int) -> dm_env.Environment:
  domain, task = name.split(':', 1)
  return suite.load(domain, task, task_kwargs={'random': seed})


def make_environment(name: str, seed: int) -> dm_env.Environment:
  """The task `name` ('domain:task'), seeded, with flat float32 observations and [-1, 1] actions.

  The seed drives the task's initial states (and any randomness in its dynamics), so equal seeds
  give equal episodes for equal actions. Raises ValueError for an unknown name without loading
  anything.
  """
  validate_task_name(name)
  constructor = _REGISTRY.get(name)
  environment = constructor(seed) if constructor is not None else _load_suite_task(name, seed)
  # Canonical actions inside single precision, so the rescale sees the task's float64 bounds.
  return FlatObservationWrapper(CanonicalActionWrapper(environment))


def _spec_leaves(spec) -> Tuple[specs.Array, ...]:
  """The array specs of an observation spec: a dict's values in its order, or the spec itself."""
  if isinstance(spec, Mapping):
    return tuple(spec.values())
  return (spec,)


class FlatObservationWrapper(single_precision.SinglePrecisionWrapper):
  """Acme's single precision, with the observation dict (or array) as one float32 vector [O].

  Entries are concatenated in the order of the observation spec, each flattened (scalars become
  one element, e.g. manipulator's `arm_pos` [8, 2] becomes 16), so a given task always lays its
  features out the same way. Acme's `ConcatObservationWrapper` is not used: it orders entries by
  sorted key (dm-tree), which would permute the inputs of networks trained by earlier runs, and
  it accepts 1-D entries only. Rewards, discounts and their specs become float32 (Acme's
  `SinglePrecisionWrapper`; Reverb tables built from the spec need matching dtypes).
  """

  def __init__(self, environment: dm_env.Environment):
    super().__init__(environment)
    spec = environment.observation_spec()
    # Keys are kept so observations are read in the spec's order, whatever order a dict comes in.
    self._keys = tuple(spec.keys()) if isinstance(spec, Mapping) else None
    size = sum(int(np.prod(leaf.shape)) for leaf in _spec_leaves(spec))
    self._observation_spec = specs.Array((size,), np.float32, name='observations')

  def _flatten(self, observation) -> np.ndarray:
    """[O] float32 from the wrapped observation."""
    if self._keys is None:
      parts = (observation,)
    else:
      parts = tuple(observation[key] for key in self._keys)
    return np.concatenate([np.asarray(p, dtype=np.float32).reshape(-1) for p in parts])

  def _convert_timestep(self, timestep: dm_env.TimeStep) -> dm_env.TimeStep:
    timestep = super()._convert_timestep(timestep)
    return timestep._replace(observation=self._flatten(timestep.observation))

  def observation_spec(self) -> specs.Array:
    return self._observation_spec


class CanonicalActionWrapper(canonical_spec.CanonicalSpecWrapper):
  """Acme's canonical action spec: actions in [-1, 1], clipped to it and mapped linearly onto the
  wrapped bounds [low, high]: a_env = low + (a + 1) / 2 · (high − low).

  The clip keeps an out-of-box action (e.g. an unsquashed policy sample) from the simulator.
  Actions are cast to the wrapped dtype first, so that the rescale runs in float64 for the
  Control Suite, not in the policy's float32. Bounds may differ per dimension but must be finite:
  an unbounded action cannot be rescaled. The spec keeps the wrapped dtype
  (`FlatObservationWrapper` makes it float32).
  """

  def __init__(self, environment: dm_env.Environment):
    spec = environment.action_spec()
    if not isinstance(spec, specs.BoundedArray):
      raise ValueError(f'Action spec must be a BoundedArray, got {spec!r}.')
    if not (np.all(np.isfinite(spec.minimum)) and np.all(np.isfinite(spec.maximum))):
      raise ValueError(f'Action bounds must be finite to rescale them, got {spec!r}.')
    super().__init__(environment, clip=True)
    self._wrapped_dtype = spec.dtype

  def step(self, action) -> dm_env.TimeStep:
    return super().step(np.asarray(action, dtype=self._wrapped_dtype))


class CombinedEnvironment(dm_env.Environment):
  """k environments stepped in lockstep as one: the paper's "combined humanoid stand".

  Observation: a dict with each part's entries under `part<i>/<key>`. Action: the parts' actions
  concatenated, [Σ A_i], split in order. Reward: the mean of the parts' rewards. Discount: the
  product of the parts' discounts. The episode ends when any part ends (parts with equal time
  limits end together).
  """

  def __init__(self, parts):
    if not parts:
      raise ValueError('CombinedEnvironment needs at least one environment.')
    self._parts = tuple(parts)
    action_specs = [p.action_spec() for p in self._parts]
    self._splits = np.cumsum([int(np.prod(s.shape)) for s in action_specs])[:-1]
    self._action_spec = specs.BoundedArray(
        (int(sum(np.prod(s.shape) for s in action_specs)),), np.float64,
        minimum=np.concatenate([np.broadcast_to(s.minimum, s.shape) for s in action_specs]),
        maximum=np.concatenate([np.broadcast_to(s.maximum, s.shape) for s in action_specs]),
        name='action')

  def _merge(self, timesteps) -> dm_env.TimeStep:
    observation = {f'part{i}/{key}': value for i, ts in enumerate(timesteps)
                   for key, value in ts.observation.items()}
    if timesteps[0].first():
      return dm_env.restart(observation)
    reward = float(np.mean([ts.reward for ts in timesteps]))
    discount = float(np.prod([ts.discount for ts in timesteps]))
    step_type = (dm_env.StepType.LAST if any(ts.last() for ts in timesteps)
                 else dm_env.StepType.MID)
    return dm_env.TimeStep(step_type, reward, discount, observation)

  def reset(self) -> dm_env.TimeStep:
    return self._merge([p.reset() for p in self._parts])

  def step(self, action) -> dm_env.TimeStep:
    actions = np.split(np.asarray(action), self._splits)
    return self._merge([p.step(a) for p, a in zip(self._parts, actions)])

  def observation_spec(self):
    return {f'part{i}/{key}': spec for i, p in enumerate(self._parts)
            for key, spec in p.observation_spec().items()}

  def action_spec(self):
    return self._action_spec

  def reward_spec(self):
    return specs.Array((), np.float64, name='reward')

  def discount_spec(self):
    return specs.BoundedArray((), np.float64, minimum=0.0, maximum=1.0, name='discount')


def _combined_humanoid_stand(num_humanoids: int) -> TaskConstructor:

  def constructor(seed: int) -> dm_env.Environment:
    # Independent, reproducible streams for the parts.
    seeds = np.random.SeedSequence(seed).generate_state(num_humanoids)
    return CombinedEnvironment([
        suite.load('humanoid', 'stand', task_kwargs={'random': int(s)}) for s in seeds])

  return constructor


# The paper's high-dimensional experiment: k humanoids at once, 21·k action dimensions.
COMBINED_HUMANOID_COUNTS = (1, 3, 5)
for _k in COMBINED_HUMANOID_COUNTS:
  register_task(f'combined_humanoid:stand_{_k}', _combined_humanoid_stand(_k))
