"""Actors act with the learner's online parameters, at most `variable_update_period` steps old.

The local run wires a training actor to the learner as `builder.make_actor(key, policy, adder,
variable_source=learner)` and interleaves `learner.step()` with `actor.update()` (Acme's
`Agent`). The test does the same with the builder's public pieces and a deterministic policy (the
evaluator's mode), so each action reveals which parameters the actor held: it must be the action
of the online parameters of a recent learner step, never of the target networks'.
"""

import time

import agents  # noqa: F401  (dm-acme patches before acme is imported)
from acme import adders
from acme.testing import fakes
from acme import specs
import jax
import numpy as np
import reverb

from agents import wpo
from wpo_jax import learning

UPDATE_PERIOD = 5
NUM_STEPS = 40


class _NoOpAdder(adders.Adder):
  """A training actor needs an adder (evaluators, without one, fetch per episode instead)."""

  def add_first(self, timestep):
    pass

  def add(self, action, next_timestep, extras=()):
    pass

  def reset(self):
    pass


def _batches(config, observation_dim, action_dim):
  rng = np.random.default_rng(0)
  size = config.batch_size * config.num_sgd_steps_per_step
  while True:
    yield reverb.ReplaySample(info=None, data=learning.Transition(
        observation=rng.normal(size=(size, observation_dim)).astype(np.float32),
        action=rng.uniform(-1, 1, (size, action_dim)).astype(np.float32),
        reward=rng.normal(size=(size,)).astype(np.float32),
        discount=np.full((size,), 0.9, np.float32),
        next_observation=rng.normal(size=(size, observation_dim)).astype(np.float32)))


def test_local_actor_acts_with_fresh_online_parameters():
  environment = fakes.ContinuousEnvironment(action_dim=2, observation_dim=3, episode_length=1000,
                                            bounded=True)
  spec = specs.make_environment_spec(environment)
  config = wpo.make_config('default', num_action_samples=4, policy_layers=(16, 16),
                           critic_layers=(16, 16), batch_size=8, learning_rate=1e-2,
                           variable_update_period=UPDATE_PERIOD, target_update_period=10_000)
  networks = wpo.make_networks(spec, config)
  builder = wpo.WPOBuilder(config)
  learner = builder.make_learner(jax.random.PRNGKey(0), networks,
                                 _batches(config, networks.observation_dim, networks.action_dim))
  mode = jax.jit(wpo.make_policy(networks, evaluation=True))
  actor = builder.make_actor(jax.random.PRNGKey(1), mode, _NoOpAdder(), variable_source=learner)

  observation = np.asarray(environment.reset().observation, np.float32)
  actor.observe_first(environment.reset())
  history = [learner.save().params.policy]  # history[j]: online policy after j learner steps.
  staleness = []
  for t in range(NUM_STEPS):
    action = actor.select_action(observation)
    candidates = [np.asarray(mode(p, jax.random.PRNGKey(0), observation[None])[0])
                  for p in history]
    matching = [j for j, a in enumerate(candidates) if np.allclose(a, action, atol=1e-6)]
    assert matching, f'step {t}: the action matches no online parameters the learner had'
    staleness.append(t - max(matching))
    actor.observe(action, environment.step(action))
    learner.step()
    history.append(learner.save().params.policy)
    actor.update()
    if (t + 1) % UPDATE_PERIOD == 0:
      # This update started the variable client's background fetch: let it land before the
      # next act, as it does in a run (an environment step takes far longer than a fetch).
      time.sleep(0.1)

  # Fetched every UPDATE_PERIOD updates: never older than that, and refreshed on schedule.
  assert max(staleness) <= UPDATE_PERIOD, staleness
  assert staleness[UPDATE_PERIOD:2 * UPDATE_PERIOD] == list(range(UPDATE_PERIOD))
  # The online parameters, not the target networks' (held at the initial ones here): by the end
  # they act differently.
  state = learner.save()
  target_action = mode(state.target_params.policy, jax.random.PRNGKey(0), observation[None])[0]
  assert np.max(np.abs(np.asarray(target_action) - action)) > 1e-3
