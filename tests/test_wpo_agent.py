"""The WPO agent plugged into Acme's own pieces: builder, EnvironmentLoop, Reverb, n-step adder."""

import dataclasses

import agents  # noqa: F401  (applies the dm-acme patches before acme is imported)
from acme import specs
from acme.adders import reverb as adders_reverb
from acme.agents import agent as acme_agent
from acme.environment_loop import EnvironmentLoop
from acme.testing import fakes
from acme.utils import counting
from acme.utils import loggers
import jax
import numpy as np
import pytest
import reverb
import tree

from agents import wpo
import recording_logger  # tests/recording_logger.py
from wpo_jax import exploration
from wpo_jax import learning
from wpo_jax import losses


def _small_config(**overrides):
  return wpo.make_config(
      'default', **{
          'num_action_samples': 4, 'policy_layers': (32, 32), 'critic_layers': (32, 32),
          'batch_size': 16, 'min_replay_size': 32, 'samples_per_insert': 16.0,
          'variable_update_period': 10, 'n_step': 3, 'prefetch_size': 1, **overrides})


def test_builder_runs_in_acme_environment_loop_with_reverb():
  environment = fakes.ContinuousEnvironment(
      action_dim=2, observation_dim=3, episode_length=20, bounded=True)
  spec = specs.make_environment_spec(environment)
  config = _small_config()
  learner_logger = recording_logger.RecordingLogger()
  builder = wpo.WPOBuilder(config, logger_fn=lambda: learner_logger)
  networks = wpo.make_networks(spec, config)

  server = reverb.Server(builder.make_replay_tables(spec), port=None)
  client = reverb.Client(f'localhost:{server.port}')
  counter = counting.Counter()
  learner = builder.make_learner(jax.random.PRNGKey(0), networks,
                                 builder.make_dataset_iterator(client),
                                 counter=counting.Counter(counter, 'learner', time_delta=0.))
  actor = builder.make_actor(jax.random.PRNGKey(1), wpo.make_policy(networks, False),
                             builder.make_adder(client), variable_source=learner)
  agent = acme_agent.Agent(
      actor, learner, min_observations=config.min_replay_size,
      observations_per_step=config.batch_size / config.samples_per_insert)
  initial_policy = jax.device_get(learner.get_variables(['policy'])[0])

  loop = EnvironmentLoop(environment, agent, counter=counting.Counter(counter, 'actor', time_delta=0.),
                         logger=loggers.NoOpLogger())
  loop.run(num_steps=300)

  # `steps` checks the learner's pending calls first, which counts them.
  learner_steps = learner.steps
  counts = counter.get_counts()
  assert counts['actor_steps'] >= 300
  # One learner step per batch/spi = 1 actor step once min_replay_size transitions are in.
  assert counts['learner_steps'] >= 300 - config.min_replay_size - config.n_step
  assert learner_steps == counts['learner_steps']
  assert {'critic_loss', 'wpo_loss', 'kl_mean', 'policy_stddev_mean', 'policy_grad_norm',
          'learner_steps'} <= set(learner_logger.rows[-1])
  # The actor's variable client has fetched parameters that differ from the initial ones.
  actor_params = jax.device_get(actor._variable_client.params)  # pylint: disable=protected-access
  changed = jax.tree_util.tree_map(lambda a, b: not np.allclose(a, b), actor_params,
                                   initial_policy)
  assert any(jax.tree_util.tree_leaves(changed))
  # What it fetches are the learner's online parameters, not the target networks' (which lag
  # by up to target_update_period steps and differ from them here).
  actor._variable_client.update_and_wait()  # pylint: disable=protected-access
  state = learner.save()
  assert counts['learner_steps'] % config.target_update_period != 0
  fetched = jax.device_get(actor._variable_client.params)  # pylint: disable=protected-access
  jax.tree_util.tree_map(np.testing.assert_array_equal, fetched, state.params.policy)
  differs = jax.tree_util.tree_map(lambda a, b: not np.array_equal(a, b), fetched,
                                   state.target_params.policy)
  assert any(jax.tree_util.tree_leaves(differs))
  assert client.server_info()[config.replay_table_name].current_size > config.min_replay_size


def test_adder_transitions_match_n_step_transition():
  """Reverb's n-step adder and wpo_jax.losses.n_step_transition agree, terminal included."""
  environment = fakes.ContinuousEnvironment(action_dim=1, observation_dim=2, episode_length=6,
                                            bounded=True)
  spec = specs.make_environment_spec(environment)
  config = _small_config(n_step=3, min_replay_size=1, samples_per_insert=1.0)
  builder = wpo.WPOBuilder(config)
  server = reverb.Server(builder.make_replay_tables(spec), port=None)
  client = reverb.Client(f'localhost:{server.port}')
  adder = builder.make_adder(client)

  rng = np.random.default_rng(0)
  rewards, discounts = [], []
  timestep = environment.reset()
  adder.add_first(timestep)
  while not timestep.last():
    action = rng.uniform(-1, 1, size=(1,)).astype(np.float32)
    timestep = environment.step(action)
    # Replace the fake's constant rewards with distinct ones so that mistakes show.
    timestep = timestep._replace(reward=np.float32(rng.normal()))
    rewards.append(float(timestep.reward))
    discounts.append(float(timestep.discount))
    adder.add(action, timestep)
  adder.reset()

  info = client.server_info()[config.replay_table_name]
  items = list(client.sample(config.replay_table_name, num_samples=8 * info.current_size,
                             emit_timesteps=False))
  assert discounts[-1] == 0.0
  signature = adders_reverb.NStepTransitionAdder.signature(spec)
  found = {}
  for item in items:
    data = tree.unflatten_as(signature, item.data)
    found[float(data.reward)] = float(data.discount)
  # Every full window and the truncated windows at the episode's end.
  for start in range(len(rewards)):
    window = slice(start, min(start + config.n_step, len(rewards)))
    ret, discount = losses.n_step_transition(np.array(rewards[window]),
                                             np.array(discounts[window]), config.discount)
    match = [r for r in found if abs(r - float(ret)) < 1e-5]
    assert match, (start, float(ret), sorted(found))
    assert found[match[0]] == pytest.approx(float(discount), abs=1e-6)


def test_learner_stops_on_non_finite_loss_and_keeps_last_state():
  environment = fakes.ContinuousEnvironment(action_dim=2, observation_dim=3, bounded=True)
  spec = specs.make_environment_spec(environment)
  config = _small_config()
  networks = wpo.make_networks(spec, config)

  def poisoned_batches():
    batch = config.batch_size
    transition = learning.Transition(
        observation=np.zeros((batch, 3), np.float32), action=np.zeros((batch, 2), np.float32),
        reward=np.full((batch,), np.nan, np.float32), discount=np.ones((batch,), np.float32),
        next_observation=np.zeros((batch, 3), np.float32))
    while True:
      yield reverb.ReplaySample(info=None, data=transition)

  learner = wpo.WPOLearner(networks, config, jax.random.PRNGKey(0), poisoned_batches(),
                           logger=loggers.NoOpLogger())
  before = learner.save()
  # Checked once per `metrics_every` calls: the last of them raises at the latest.
  with pytest.raises(wpo.NonFiniteLossError, match='non-finite'):
    for _ in range(config.metrics_every):
      learner.step()
  assert learner.steps == 0
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         learner.get_variables(['policy', 'critic']),
                         [before.params.policy, before.params.critic])
  with pytest.raises(wpo.NonFiniteLossError):  # No checkpoint can be taken of a failed learner.
    learner.save()


@pytest.mark.parametrize('field, value', [
    ('batch_size', 0), ('n_step', 0), ('samples_per_insert', -1.0), ('min_replay_size', 0),
    ('max_replay_size', 10), ('variable_update_period', 0), ('num_action_samples', 0),
    ('discount', 2.0), ('policy_layers', ()),
])
def test_config_fails_at_construction_naming_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    wpo.WPOConfig(**{field: value})


def test_config_presets_and_overrides():
  assert wpo.make_config('cpu').num_action_samples < wpo.WPOConfig().num_action_samples
  assert dataclasses.asdict(wpo.make_config('default')) == dataclasses.asdict(wpo.WPOConfig())
  with pytest.raises(ValueError, match='valid presets'):
    wpo.make_config('gpu-huge')
  with pytest.raises(ValueError, match='learning_rat'):
    wpo.make_config('default', learning_rat=1.0)


class _Variables:
  """A VariableSource serving fixed policy parameters."""

  def __init__(self, policy_params):
    self._policy_params = policy_params

  def get_variables(self, names):
    return [self._policy_params for _ in names]


@pytest.mark.parametrize('policy', ['gaussian', 'tanh_gaussian'])
def test_coloured_exploration_acts_with_one_fresh_noise_sequence_per_episode(policy):
  """The training actor's draw at step t is π's draw for the t-th noise of a sequence that
  `wpo_jax.exploration.coloured_noise` makes from the episode's key, as GenericActor splits it."""
  environment = fakes.ContinuousEnvironment(action_dim=2, observation_dim=3, episode_length=20,
                                            bounded=True)
  spec = specs.make_environment_spec(environment)
  config = _small_config(policy=policy, init_scale=0.05, exploration_noise_exponent=2.0,
                         exploration_noise_horizon=8)
  networks = wpo.make_networks(spec, config)
  params = networks.networks.policy.init(jax.random.PRNGKey(5), np.zeros((1, 3), np.float32))
  builder = wpo.WPOBuilder(config)
  actor_key = jax.random.PRNGKey(1)
  # No adder: only how it acts matters here.
  actor = builder.make_actor(actor_key, wpo.make_behaviour_policy(networks, config),
                             variable_source=_Variables(params))
  observation = np.linspace(-1, 1, 3).astype(np.float32)
  distribution = networks.networks.policy.apply(params, observation[None])
  episodes = []
  for _ in range(2):
    actor.observe_first(environment.reset())
    episodes.append(np.stack([actor.select_action(observation) for _ in range(12)]))
  for episode, key in zip(episodes, (jax.random.split(actor_key)[1],
                                     jax.random.split(jax.random.split(actor_key)[0])[1])):
    noise = exploration.coloured_noise(key, 8, (2,), 2.0)
    expected = [distribution.from_noise(noise[t % 8][None])[0] for t in range(12)]
    np.testing.assert_allclose(episode, np.clip(expected, -1, 1), rtol=1e-5, atol=1e-6)
  assert not np.allclose(episodes[0], episodes[1])  # A new sequence each episode.


def test_white_exploration_is_the_plain_policy():
  spec = specs.make_environment_spec(fakes.ContinuousEnvironment(
      action_dim=2, observation_dim=3, episode_length=20, bounded=True))
  config = _small_config()
  networks = wpo.make_networks(spec, config)
  behaviour = wpo.make_behaviour_policy(networks, config)
  params = networks.networks.policy.init(jax.random.PRNGKey(5), np.zeros((1, 3), np.float32))
  observation, key = np.ones((4, 3), np.float32), jax.random.PRNGKey(2)
  np.testing.assert_array_equal(behaviour(params, key, observation),
                                wpo.make_policy(networks, False)(params, key, observation))


@pytest.mark.parametrize('overrides, message', [
    ({'exploration_noise_exponent': -1.0}, 'exploration_noise_exponent=-1.0 is invalid'),
    ({'exploration_noise_exponent': 5.0}, r'in \[0, 4.0\]'),
    ({'exploration_noise_exponent': 1.0, 'policy': 'mixture'}, "0 with policy='mixture'"),
    ({'exploration_noise_horizon': 1}, 'exploration_noise_horizon=1 is invalid'),
])
def test_exploration_noise_settings_are_checked(overrides, message):
  with pytest.raises(ValueError, match=message):
    wpo.WPOConfig(**overrides)
