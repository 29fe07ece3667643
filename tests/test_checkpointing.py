"""RunCheckpointer: round trips, atomic commits, keep-last-K, fall-back past damaged checkpoints
(learner and replay together, on a real Reverb server), a full disk, the previous format."""

import errno
import json
import logging
import os

import agents  # noqa: F401  (dm-acme patches)
import jax
import numpy as np
import pytest
import reverb

from agents import checkpoint_files
from agents import checkpointing
from wpo_jax import learning
from wpo_jax import networks


def _state(seed):
  learner = learning.make_learner(networks.make_networks(2, (8,), (8,)), 2)
  return learner.init(jax.random.PRNGKey(seed), 3)


def _tables():
  return [reverb.Table('replay', reverb.selectors.Uniform(), reverb.selectors.Fifo(), 100,
                       reverb.rate_limiters.MinSize(1))]


def _replay_size(client):
  return client.server_info()['replay'].current_size


def _save_run(directory, replay_sizes, keep=3):
  """One launch: a server from the checkpointer, a save after filling replay to each size; the
  learner state's `steps` is the replay size too, so each checkpoint's parts can be matched."""
  checkpointer = checkpointing.RunCheckpointer(str(directory), keep=keep)
  server = reverb.Server(_tables(), port=None, checkpointer=checkpointer.replay_checkpointer())
  client = reverb.Client(f'localhost:{server.port}')
  paths = []
  for size in replay_sizes:
    while _replay_size(client) < size:
      client.insert(np.float32(_replay_size(client)), {'replay': 1.0})
    paths.append(checkpointer.save(_state(0)._replace(steps=np.int32(size)),
                                   {'actor_steps': size}, client))
  server.stop()
  return paths


def _resume(directory):
  """A restart: (restored, replay size of the server started from the same checkpointer)."""
  checkpointer = checkpointing.RunCheckpointer(str(directory))
  server = reverb.Server(_tables(), port=None, checkpointer=checkpointer.replay_checkpointer())
  try:
    size = _replay_size(reverb.Client(f'localhost:{server.port}'))
  finally:
    server.stop()
  return checkpointer.restore(_state(1)), size


def _checkpoint_dirs(directory):
  return sorted(f for f in os.listdir(directory) if f.startswith('ckpt-'))


def test_round_trip_restores_every_leaf(tmp_path):
  checkpointer = checkpointing.RunCheckpointer(str(tmp_path))
  assert checkpointer.restore(_state(0)) is None
  state = _state(1)._replace(steps=np.int32(17))
  checkpointer.save(state, {'actor_steps': 1234, 'learner_steps': 17})
  restored = checkpointing.RunCheckpointer(str(tmp_path)).restore(_state(0))
  assert restored.counts == {'actor_steps': 1234, 'learner_steps': 17}
  jax.tree_util.tree_map(np.testing.assert_array_equal, restored.learner_state, state)
  assert type(restored.learner_state) is learning.TrainingState


def test_a_save_killed_before_its_commit_leaves_the_previous_checkpoint(tmp_path):
  checkpointer = checkpointing.RunCheckpointer(str(tmp_path))
  checkpointer.save(_state(0)._replace(steps=np.int32(3)), {'learner_steps': 3})
  # What a SIGKILL during the next save leaves: its temporary directory, never renamed.
  partial = tmp_path / '.partial-ckpt-0000000002'
  partial.mkdir()
  (partial / 'learner.msgpack').write_bytes(b'partial')
  fresh = checkpointing.RunCheckpointer(str(tmp_path))
  assert int(fresh.restore(_state(0)).learner_state.steps) == 3
  fresh.save(_state(0)._replace(steps=np.int32(4)), {'learner_steps': 4})
  assert _checkpoint_dirs(tmp_path) == ['ckpt-0000000001', 'ckpt-0000000002']
  assert not [f for f in os.listdir(tmp_path) if f.startswith(('.tmp-', '.partial-'))]
  with open(tmp_path / 'manifest.json') as f:
    assert json.load(f) == {'format': 2, 'latest': 'ckpt-0000000002', 'sequence': 2,
                            'learner': 'ckpt-0000000002/learner.msgpack',
                            'counts': {'learner_steps': 4}}


def test_keeps_the_last_k_checkpoints_and_never_prunes_a_damaged_one(tmp_path):
  checkpointer = checkpointing.RunCheckpointer(str(tmp_path), keep=2)
  for steps in (1, 2, 3):
    checkpointer.save(_state(0)._replace(steps=np.int32(steps)), {'learner_steps': steps})
  assert _checkpoint_dirs(tmp_path) == ['ckpt-0000000002', 'ckpt-0000000003']
  # Damage the oldest kept one: it no longer counts among the two good ones, and stays.
  (tmp_path / 'ckpt-0000000002' / 'learner.msgpack').write_bytes(b'x')
  checkpointer = checkpointing.RunCheckpointer(str(tmp_path), keep=2)
  for steps in (4, 5):
    checkpointer.save(_state(0)._replace(steps=np.int32(steps)), {'learner_steps': steps})
  assert _checkpoint_dirs(tmp_path) == ['ckpt-0000000002', 'ckpt-0000000004', 'ckpt-0000000005']
  with pytest.raises(ValueError, match='keep=0'):
    checkpointing.RunCheckpointer(str(tmp_path), keep=0)


def test_replay_is_checkpointed_and_reloaded_by_a_new_server(tmp_path):
  _save_run(tmp_path, [7, 7, 7])
  restored, size = _resume(tmp_path)
  assert size == 7 and int(restored.learner_state.steps) == 7
  assert os.listdir(tmp_path / 'ckpt-0000000003' / 'replay')
  assert not os.listdir(tmp_path / '.replay-staging')  # Each save moved Reverb's output.


@pytest.mark.parametrize('damage', ['truncate', 'delete'])
def test_a_damaged_newest_learner_file_resumes_from_the_previous_checkpoint(tmp_path, caplog,
                                                                            damage):
  paths = _save_run(tmp_path, [3, 5, 8])
  newest = paths[-1]
  assert newest == str(tmp_path / 'ckpt-0000000003' / 'learner.msgpack')
  if damage == 'truncate':
    os.truncate(newest, 1000)
  else:
    os.remove(newest)
  with caplog.at_level(logging.WARNING):
    restored, size = _resume(tmp_path)
  assert newest in caplog.text
  # Learner, counts and replay all come from the second save.
  assert int(restored.learner_state.steps) == 5
  assert restored.counts == {'actor_steps': 5}
  assert size == 5
  assert os.path.isdir(tmp_path / 'ckpt-0000000003')  # Left in place.
  if damage == 'truncate':
    assert os.path.getsize(newest) == 1000


def test_a_corrupt_replay_checkpoint_resumes_from_the_previous_checkpoint(tmp_path, caplog):
  _save_run(tmp_path, [3, 5, 8])
  replay = tmp_path / 'ckpt-0000000003' / 'replay'
  damaged = str(replay / sorted(f for f in os.listdir(replay) if f.endswith('.tfrecord'))[0])
  with open(damaged, 'r+b') as f:  # Same size, one byte flipped.
    f.seek(os.path.getsize(damaged) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))
  with caplog.at_level(logging.WARNING):
    restored, size = _resume(tmp_path)
  assert damaged in caplog.text and 'SHA-256' in caplog.text
  assert int(restored.learner_state.steps) == 5 and size == 5


def test_without_any_usable_checkpoint_restore_says_what_to_do(tmp_path):
  _save_run(tmp_path, [3])
  os.remove(tmp_path / 'ckpt-0000000001' / 'commit.json')
  with pytest.raises(checkpointing.CheckpointError, match='move .* aside'):
    checkpointing.RunCheckpointer(str(tmp_path)).restore(_state(0))


def test_a_full_disk_stops_the_save_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
  checkpointer = checkpointing.RunCheckpointer(str(tmp_path))
  server = reverb.Server(_tables(), port=None, checkpointer=checkpointer.replay_checkpointer())
  client = reverb.Client(f'localhost:{server.port}')
  for i in range(4):
    client.insert(np.float32(i), {'replay': 1.0})
  previous = checkpointer.save(_state(0)._replace(steps=np.int32(4)), {'actor_steps': 4}, client)
  client.insert(np.float32(9), {'replay': 1.0})
  write = checkpoint_files.write_file

  def write_half_then_fail(path, data):
    write(path, data[:len(data) // 2])
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

  monkeypatch.setattr(checkpoint_files, 'write_file', write_half_then_fail)
  with pytest.raises(checkpointing.DiskFullError) as raised:
    checkpointer.save(_state(0)._replace(steps=np.int32(5)), {'actor_steps': 5}, client)
  server.stop()
  message = str(raised.value)
  assert 'full' in message and str(tmp_path) in message
  assert os.path.dirname(previous) in message and 'Free space' in message
  assert raised.value.errno == errno.ENOSPC
  monkeypatch.undo()
  assert _checkpoint_dirs(tmp_path) == ['ckpt-0000000001']
  assert not [f for f in os.listdir(tmp_path) if f.startswith(('.tmp-', '.partial-'))]
  restored, size = _resume(tmp_path)
  assert int(restored.learner_state.steps) == 4 and size == 4


def _write_previous_format(directory, size):
  """A checkpoint as the previous RunCheckpointer wrote it: manifest.json naming a flax msgpack
  learner file, counts and a sequence; Reverb's own checkpoint under replay/."""
  server = reverb.Server(_tables(), port=None,
                         checkpointer=reverb.checkpointers.DefaultCheckpointer(
                             str(directory / 'replay')))
  client = reverb.Client(f'localhost:{server.port}')
  for i in range(size):
    client.insert(np.float32(i), {'replay': 1.0})
  client.checkpoint()
  server.stop()
  from flax import serialization
  (directory / 'learner-0000000004.msgpack').write_bytes(
      serialization.to_bytes(_state(0)._replace(steps=np.int32(size))))
  (directory / 'manifest.json').write_text(json.dumps(
      {'learner': 'learner-0000000004.msgpack', 'counts': {'actor_steps': size}, 'sequence': 4}))


def test_a_checkpoint_of_the_previous_format_restores_and_is_retired_after_k_saves(tmp_path):
  _write_previous_format(tmp_path, 6)
  restored, size = _resume(tmp_path)
  assert int(restored.learner_state.steps) == 6 and size == 6
  assert restored.counts == {'actor_steps': 6}
  # New saves continue its numbering; it stays the fall-back until `keep` new ones verify.
  _save_run(tmp_path, [7, 8], keep=3)
  assert _checkpoint_dirs(tmp_path) == ['ckpt-0000000005', 'ckpt-0000000006']
  assert os.path.exists(tmp_path / 'legacy-manifest.json')
  os.remove(tmp_path / 'ckpt-0000000006' / 'learner.msgpack')
  os.remove(tmp_path / 'ckpt-0000000005' / 'learner.msgpack')
  restored, size = _resume(tmp_path)
  assert int(restored.learner_state.steps) == 6 and size == 6
  _save_run(tmp_path, [9, 10, 11], keep=3)
  assert not os.path.exists(tmp_path / 'legacy-manifest.json')
  assert not os.path.exists(tmp_path / 'learner-0000000004.msgpack')
  assert _checkpoint_dirs(tmp_path) == ['ckpt-0000000005', 'ckpt-0000000006', 'ckpt-0000000007',
                                        'ckpt-0000000008', 'ckpt-0000000009']


def test_a_damaged_checkpoint_of_the_previous_format_is_named(tmp_path):
  _write_previous_format(tmp_path, 2)
  learner_file = tmp_path / 'learner-0000000004.msgpack'
  learner_file.write_bytes(learner_file.read_bytes()[:1024])
  with pytest.raises(checkpointing.CheckpointError, match=str(learner_file)):
    checkpointing.RunCheckpointer(str(tmp_path)).restore(_state(0))


def test_a_state_of_other_settings_is_refused_clearly(tmp_path):
  checkpointing.RunCheckpointer(str(tmp_path)).save({'other': np.zeros(3)}, {'actor_steps': 1})
  with pytest.raises(checkpointing.CheckpointError, match='other agent settings'):
    checkpointing.RunCheckpointer(str(tmp_path)).restore(_state(0))


def test_a_full_disk_after_the_commit_keeps_the_new_checkpoint(tmp_path, monkeypatch):
  checkpointer = checkpointing.RunCheckpointer(str(tmp_path))
  checkpointer.save(_state(0)._replace(steps=np.int32(1)), {'actor_steps': 1})

  def full(path, data):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

  monkeypatch.setattr(checkpointing, 'atomic_write', full)  # The summary manifest.json.
  with pytest.raises(checkpointing.DiskFullError, match='ckpt-0000000002 was committed'):
    checkpointer.save(_state(0)._replace(steps=np.int32(2)), {'actor_steps': 2})
  monkeypatch.undo()
  restored = checkpointing.RunCheckpointer(str(tmp_path)).restore(_state(1))
  assert int(restored.learner_state.steps) == 2 and restored.counts == {'actor_steps': 2}
