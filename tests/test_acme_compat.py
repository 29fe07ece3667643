"""Tests for agents.acme_compat: each patch, plus the acme 0.4.0 pieces the WPO agent relies on."""

import importlib
import os
import signal
import sys
import threading
import time
import types

from agents import acme_compat  # Applies the patches before anything imports acme.

import jax
import jax.numpy as jnp
import numpy as np
import pytest

acme_compat.apply()

# pytest resets warning filters per test; mirror the filter apply() installs for acme's call sites.
pytestmark = pytest.mark.filterwarnings(r'ignore:jax\.tree_(map|flatten) is deprecated')


def _missing(*packages):
  return any(importlib.util.find_spec(p) is None for p in packages)


# ------------------------------------------------------------------------------------------------
# apply() and the JAX aliases.


def test_apply_twice_is_harmless():
  acme_compat.apply()
  # Bypass the guard too: every individual patch must be idempotent on its own.
  acme_compat._applied = False
  acme_compat.apply()
  finders = [f for f in sys.meta_path if isinstance(f, acme_compat._AcmeFinder)]
  assert len(finders) == 1
  assert sys.meta_path[0] is finders[0]
  assert jax.tree_multimap is jax.tree_util.tree_map
  assert jax.xla.Device is jax.Device


def test_set_missing_never_overwrites():
  module = types.ModuleType('fake')
  module.present = 1
  acme_compat._set_missing(module, 'present', 2)
  acme_compat._set_missing(module, 'absent', 3)
  assert (module.present, module.absent) == (1, 3)


def test_tree_multimap_behaves_as_tree_map():
  out = jax.tree_multimap(lambda a, b: a + b, {'x': 1, 'y': (2,)}, {'x': 10, 'y': (20,)})
  assert out == {'x': 11, 'y': (22,)}


def test_legacy_array_types_are_jax_array():
  x = jnp.ones(2)
  assert isinstance(x, jnp.DeviceArray)
  assert isinstance(x, jax.xla.DeviceArray)
  assert isinstance(jax.devices()[0], jax.xla.Device)
  assert jax.pxla.ShardedDeviceArray is jax.Array


def test_acme_functions_using_removed_jax_names():
  from acme.adders.reverb import utils as adder_utils
  from acme.jax import utils
  assert isinstance(utils.fetch_devicearray({'a': jnp.ones(2)})['a'], np.ndarray)
  np.testing.assert_array_equal(adder_utils.zeros_like(jnp.ones(2)), np.zeros(2))
  replicated = utils.replicate_in_all_devices({'p': np.ones(3)})
  first = utils.get_from_first_device(replicated)
  np.testing.assert_array_equal(first['p'], np.ones(3))
  items = list(utils.prefetch(iter([np.ones(2)] * 3), buffer_size=2, device=jax.devices()[0]))
  assert len(items) == 3 and isinstance(items[0], jax.Array)


# ------------------------------------------------------------------------------------------------
# acme.utils.signals without launchpad.


def test_signals_module_is_ours():
  from acme.utils import signals
  assert signals.runtime_terminator is acme_compat.runtime_terminator


def test_runtime_terminator_enters_and_exits_cleanly():
  before = signal.getsignal(signal.SIGTERM)
  with acme_compat.runtime_terminator(lambda: None):
    assert signal.getsignal(signal.SIGTERM) is acme_compat._on_sigterm
  assert signal.getsignal(signal.SIGTERM) == before


def test_runtime_terminator_stops_on_real_sigterm():
  calls = []
  reached_end = False
  before = signal.getsignal(signal.SIGTERM)
  with acme_compat.termination_watch() as terminated:
    with acme_compat.runtime_terminator(lambda: calls.append(1)):
      os.kill(os.getpid(), signal.SIGTERM)
      for _ in range(200):  # SystemExit lands here and is swallowed by the context.
        time.sleep(0.01)
      reached_end = True
  assert calls == [1] and not reached_end
  assert terminated.is_set()
  assert signal.getsignal(signal.SIGTERM) == before
  with acme_compat.termination_watch() as later:  # A watch opened after it never sees it.
    assert not later.is_set()


def test_runtime_terminator_off_main_thread_is_a_plain_context():
  errors, ran = [], []

  def worker():
    try:
      with acme_compat.runtime_terminator():
        ran.append(True)
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  thread = threading.Thread(target=worker)
  thread.start()
  thread.join()
  assert ran and not errors


class _SigtermActor:
  """A core.Actor that sends the process a SIGTERM on its `stop_at`-th action."""

  def __init__(self, action_spec, stop_at: int):
    self._action = np.zeros(action_spec.shape, action_spec.dtype)
    self._stop_at = stop_at
    self.num_actions = 0

  def select_action(self, observation):
    self.num_actions += 1
    if self.num_actions == self._stop_at:
      os.kill(os.getpid(), signal.SIGTERM)
    return self._action

  def observe_first(self, timestep):
    pass

  def observe(self, action, next_timestep):
    pass

  def update(self, wait=False):
    pass


def test_environment_loop_returns_on_sigterm():
  import acme
  from acme.testing import fakes
  from acme.utils import loggers
  env = fakes.ContinuousEnvironment(action_dim=2, observation_dim=3, episode_length=10)
  actor = _SigtermActor(env.action_spec(), stop_at=5)
  loop = acme.EnvironmentLoop(env, actor, logger=loggers.NoOpLogger())
  loop.run(num_steps=1000)
  assert actor.num_actions < 10


# ------------------------------------------------------------------------------------------------
# Lazy package __init__s.


def test_lazy_agent_package_exports():
  import acme.agents.jax.sac as sac
  from acme.agents.jax.sac import builder
  assert sac.SACBuilder is builder.SACBuilder
  assert {'SAC', 'DistributedSAC', 'SACConfig'} <= set(dir(sac))
  assert not hasattr(sac, 'no_such_name')
  if _missing('launchpad') or _missing('sonnet'):
    with pytest.raises(ImportError):
      sac.DistributedSAC  # pylint: disable=pointless-statement


def test_lazy_wrappers_package():
  import acme.wrappers
  from acme.wrappers import SinglePrecisionWrapper  # pylint: disable=unused-import
  assert not hasattr(acme.wrappers, 'no_such_name')
  if _missing('gym'):
    with pytest.raises(ImportError, match='gym'):
      from acme.wrappers import GymWrapper  # pylint: disable=unused-import,g-import-not-at-top


@pytest.mark.parametrize('name', [
    'acme', 'acme.environment_loop', 'acme.adders.reverb', 'acme.datasets.reverb',
    'acme.jax.variable_utils', 'acme.agents.jax.actors', 'acme.agents.jax.builders',
    'acme.jax.utils', 'acme.jax.networks', 'acme.testing.fakes', 'acme.utils.loggers',
    'acme.utils.counting', 'acme.jax.losses.mpo', 'acme.agents.jax.sac.builder',
    'acme.agents.jax.td3.builder', 'acme.agents.jax.d4pg.builder',
])
def test_acme_module_imports(name):
  importlib.import_module(name)


def test_loggers_and_counter(tmp_path):
  from acme.utils import counting, loggers
  logger = loggers.CSVLogger(str(tmp_path), label='learner', add_uid=False)
  logger.write({'step': 1, 'loss': np.float32(0.5)})
  logger.close()
  with open(logger.file_path) as f:
    assert f.read().splitlines() == ['loss,step', '0.5,1']  # Columns come out sorted.
  loggers.TerminalLogger(label='test', print_fn=lambda s: None).write({'x': jnp.ones(())})
  parent = counting.Counter()
  counting.Counter(parent, prefix='learner').increment(steps=2)
  assert parent.get_counts()['learner_steps'] == 2


# ------------------------------------------------------------------------------------------------
# Reverb: the adder's writer and make_reverb_dataset against a real in-process server.


def _fake_env():
  from acme.testing import fakes
  return fakes.ContinuousEnvironment(action_dim=2, observation_dim=3, bounded=True,
                                     episode_length=6)


def test_nstep_adder_and_make_reverb_dataset():
  import reverb
  from acme import specs
  from acme.adders import reverb as adders_reverb
  from acme.adders.reverb import base
  from acme.datasets import reverb as datasets
  assert base.ReverbAdder._writer.fget.__module__ == acme_compat.__name__
  env = _fake_env()
  spec = specs.make_environment_spec(env)
  table = reverb.Table(
      name='t', sampler=reverb.selectors.Uniform(), remover=reverb.selectors.Fifo(),
      max_size=100, rate_limiter=reverb.rate_limiters.MinSize(1),
      signature=adders_reverb.NStepTransitionAdder.signature(spec))
  server = reverb.Server([table], port=None)
  try:
    client = reverb.Client(f'localhost:{server.port}')
    adder = adders_reverb.NStepTransitionAdder(
        client=client, n_step=2, discount=0.9, priority_fns={'t': None})
    action = np.zeros(spec.actions.shape, spec.actions.dtype)
    for _ in range(2):
      timestep = env.reset()
      adder.add_first(timestep)
      while not timestep.last():
        timestep = env.step(action)
        adder.add(action, timestep)
    assert client.server_info()['t'].current_size > 0
    dataset = datasets.make_reverb_dataset(
        server_address=client.server_address, table='t', batch_size=4, num_parallel_calls=1)
    sample = next(dataset.as_numpy_iterator())
    assert sample.data.observation.shape == (4, 3)
    assert sample.data.action.shape == (4, 2)
    assert sample.data.reward.shape == (4,)
  finally:
    server.stop()


# ------------------------------------------------------------------------------------------------
# Acme's JAX SAC/TD3/D4PG, built from their builders as a single-process agent.

_TINY = dict(batch_size=4, min_replay_size=4, samples_per_insert=1.0,
             samples_per_insert_tolerance_rate=1000.0, prefetch_size=1)


def _sac(spec):
  from acme.agents.jax import sac
  networks = sac.make_networks(spec, (8, 8))
  config = sac.SACConfig(target_entropy=sac.target_entropy_from_env_spec(spec), **_TINY)
  return sac.SACBuilder(config), networks, sac.apply_policy_and_sample(networks)


def _td3(spec):
  from acme.agents.jax import td3
  networks = td3.make_networks(spec, (8, 8))
  policy = td3.get_default_behavior_policy(networks, spec.actions, sigma=0.1)
  return td3.TD3Builder(td3.TD3Config(**_TINY)), networks, policy


def _d4pg(spec):
  from acme.agents.jax import d4pg
  config = d4pg.D4PGConfig(**_TINY)
  networks = d4pg.make_networks(spec, (8, 8), (8, 8), num_atoms=11)
  return d4pg.D4PGBuilder(config), networks, d4pg.get_default_behavior_policy(networks, config)


@pytest.mark.parametrize('make_agent', [_sac, _td3, _d4pg], ids=['sac', 'td3', 'd4pg'])
def test_acme_agent_builders_end_to_end(make_agent):
  import acme
  import reverb
  from acme import specs
  from acme.utils import counting, loggers
  env = _fake_env()
  spec = specs.make_environment_spec(env)
  builder, networks, policy = make_agent(spec)
  server = reverb.Server(builder.make_replay_tables(spec), port=None)
  try:
    client = reverb.Client(f'localhost:{server.port}')
    learner = builder.make_learner(
        jax.random.PRNGKey(0), networks, builder.make_dataset_iterator(client), client,
        counting.Counter())
    actor = builder.make_actor(jax.random.PRNGKey(1), policy, builder.make_adder(client),
                               variable_source=learner)
    counter = counting.Counter()
    loop = acme.EnvironmentLoop(env, actor, counter=counter, logger=loggers.NoOpLogger())
    loop.run(num_episodes=2)
    learner.step()
    actor.update(wait=True)
    loop.run(num_episodes=1)
    assert counter.get_counts()['episodes'] == 3
  finally:
    server.stop()
