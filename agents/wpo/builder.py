"""WPO builder for dm-acme 0.4.0's `ActorLearnerBuilder` (replay, dataset, adder, actor, learner)."""

from typing import Callable, Iterator, List, Optional, Union

from acme import adders
from acme import core
from acme import datasets
from acme import specs
from acme.adders import reverb as adders_reverb
from acme.agents.jax import actor_core as actor_core_lib
from acme.agents.jax import actors
from acme.agents.jax import builders
from acme.jax import variable_utils
from acme.utils import counting
from acme.utils import loggers
import jax
import reverb

from agents.wpo import config as config_lib
from agents.wpo import learning
from agents.wpo import networks as networks_lib


class WPOBuilder(builders.ActorLearnerBuilder):
  """Builds the pieces of a WPO agent; run locally or with one process per piece."""

  def __init__(self, config: config_lib.WPOConfig,
               logger_fn: Callable[[], Optional[loggers.Logger]] = lambda: None):
    self._config = config
    self._logger_fn = logger_fn

  def make_replay_tables(self, environment_spec: specs.EnvironmentSpec) -> List[reverb.Table]:
    config = self._config
    # Slack around the target ratio, in samples. Besides Acme's tolerance it must hold what the
    # dataset prefetches ahead of the learner, or a single-process run (actor and learner in one
    # thread) could block sampling for data that only that same thread can insert.
    error_buffer = max(
        config.min_replay_size * config.samples_per_insert_tolerance_rate *
        config.samples_per_insert,
        2.0 * config.batch_size * config.num_sgd_steps_per_step * (config.prefetch_size + 2))
    limiter = reverb.rate_limiters.SampleToInsertRatio(
        min_size_to_sample=config.min_replay_size,
        samples_per_insert=config.samples_per_insert,
        error_buffer=error_buffer)
    return [
        reverb.Table(
            name=config.replay_table_name,
            sampler=reverb.selectors.Uniform(),
            remover=reverb.selectors.Fifo(),
            max_size=config.max_replay_size,
            rate_limiter=limiter,
            signature=adders_reverb.NStepTransitionAdder.signature(environment_spec))
    ]

  def make_dataset_iterator(self, replay_client: reverb.Client) -> Iterator[reverb.ReplaySample]:
    config = self._config
    dataset = datasets.make_reverb_dataset(
        table=config.replay_table_name,
        server_address=replay_client.server_address,
        batch_size=config.batch_size * config.num_sgd_steps_per_step,
        prefetch_size=config.prefetch_size,
        transition_adder=True)
    return dataset.as_numpy_iterator()

  def make_adder(self, replay_client: reverb.Client) -> adders.Adder:
    return adders_reverb.NStepTransitionAdder(
        priority_fns={self._config.replay_table_name: None},
        client=replay_client,
        n_step=self._config.n_step,
        discount=self._config.discount)

  def make_actor(self,
                 random_key: jax.Array,
                 policy_network: Union[networks_lib.Policy, actor_core_lib.ActorCore],
                 adder: Optional[adders.Adder] = None,
                 variable_source: Optional[core.VariableSource] = None) -> core.Actor:
    """A training actor when given an adder; without one, an evaluator.

    `policy_network`: a feed-forward policy (`networks.make_policy`) or an Acme `ActorCore`
    (`networks.make_behaviour_policy` with coloured noise).

    Training actors refresh parameters every `variable_update_period` actor steps; evaluators
    (no adder) fetch the latest parameters at the start of every episode.
    """
    if variable_source is None:
      raise ValueError('WPOBuilder.make_actor needs a variable_source (the learner) to fetch '
                       'policy parameters from.')
    evaluator = adder is None
    variable_client = variable_utils.VariableClient(
        variable_source, 'policy',
        update_period=1 if evaluator else self._config.variable_update_period,
        device='cpu')
    if not isinstance(policy_network, actor_core_lib.ActorCore):  # A feed-forward policy.
      policy_network = actor_core_lib.batched_feed_forward_to_actor_core(policy_network)
    return actors.GenericActor(policy_network, random_key, variable_client, adder,
                               backend='cpu', per_episode_update=evaluator)

  def make_learner(self,
                   random_key: jax.Array,
                   networks: networks_lib.WPONetworks,
                   dataset: Iterator[reverb.ReplaySample],
                   replay_client: Optional[reverb.Client] = None,
                   counter: Optional[counting.Counter] = None) -> learning.WPOLearner:
    del replay_client  # Uniform replay: no priorities to update.
    return learning.WPOLearner(networks, self._config, random_key, dataset, counter,
                               self._logger_fn())
