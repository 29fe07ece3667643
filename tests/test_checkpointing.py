"""RunCheckpointer: round trips, crash safety of the commit point, pruning, replay reload."""

import json
import os

import agents  # noqa: F401  (dm-acme patches)
import jax
import numpy as np
import reverb

from agents import checkpointing
from wpo_jax import learning
from wpo_jax import networks


def _state(seed):
  learner = learning.make_learner(networks.make_networks(2, (8,), (8,)), 2)
  return learner.init(jax.random.PRNGKey(seed), 3)


def test_round_trip_restores_every_leaf(tmp_path):
  checkpointer = checkpointing.RunCheckpointer(str(tmp_path))
  assert checkpointer.restore(_state(0)) is None
  state = _state(1)._replace(steps=np.int32(17))
  checkpointer.save(state, {'actor_steps': 1234, 'learner_steps': 17})
  restored = checkpointing.RunCheckpointer(str(tmp_path)).restore(_state(0))
  assert restored.counts == {'actor_steps': 1234, 'learner_steps': 17}
  jax.tree_util.tree_map(np.testing.assert_array_equal, restored.learner_state, state)
  assert type(restored.learner_state) is learning.TrainingState


def test_manifest_is_the_commit_point_and_old_files_are_pruned(tmp_path):
  checkpointer = checkpointing.RunCheckpointer(str(tmp_path), keep=2)
  for steps in (1, 2, 3):
    checkpointer.save(_state(steps)._replace(steps=np.int32(steps)), {'learner_steps': steps})
  learner_files = sorted(f for f in os.listdir(tmp_path) if f.startswith('learner-'))
  assert learner_files == ['learner-0000000002.msgpack', 'learner-0000000003.msgpack']
  # A crash after writing a newer learner file but before the manifest leaves the old one valid.
  (tmp_path / 'learner-0000000004.msgpack').write_bytes(b'partial')
  restored = checkpointer.restore(_state(0))
  assert int(restored.learner_state.steps) == 3
  with open(tmp_path / 'manifest.json') as f:
    assert json.load(f)['learner'] == 'learner-0000000003.msgpack'
  assert not [f for f in os.listdir(tmp_path) if f.startswith('.tmp-')]


def test_replay_is_checkpointed_and_reloaded_by_a_new_server(tmp_path):
  checkpointer = checkpointing.RunCheckpointer(str(tmp_path))

  def tables():
    return [reverb.Table('replay', reverb.selectors.Uniform(), reverb.selectors.Fifo(), 100,
                         reverb.rate_limiters.MinSize(1))]

  server = reverb.Server(tables(), port=None, checkpointer=checkpointer.replay_checkpointer())
  client = reverb.Client(f'localhost:{server.port}')
  for i in range(7):
    client.insert(np.float32(i), {'replay': 1.0})
  checkpointer.save(_state(0), {'actor_steps': 7}, client)
  checkpointer.save(_state(0), {'actor_steps': 7}, client)
  checkpointer.save(_state(0), {'actor_steps': 7}, client)
  server.stop()
  assert os.listdir(checkpointer.replay_directory)

  server = reverb.Server(tables(), port=None, checkpointer=checkpointer.replay_checkpointer())
  client = reverb.Client(f'localhost:{server.port}')
  assert client.server_info()['replay'].current_size == 7
  server.stop()
