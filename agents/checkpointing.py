"""Crash-safe checkpoints of a run: learner state, step counts and the Reverb replay buffer.

Layout under `directory`:
  manifest.json              the commit point: which learner file is current, and the counts
  learner-<n>.msgpack        the learner's state (any pytree of arrays), flax msgpack; n counts saves
  replay/<timestamp>/        Reverb's own checkpoints (written by the server's checkpointer)

Every file is written to a temporary name and renamed into place, and the manifest is renamed
last, so a SIGKILL at any moment leaves the previous checkpoint readable. Older learner files are
pruned only after a newer one is committed. Reverb's checkpointer writes its DONE marker last and
itself keeps only its newest checkpoint.
"""

import json
import os
import tempfile
from typing import Any, Dict, Mapping, NamedTuple, Optional

from flax import serialization
import reverb

MANIFEST = 'manifest.json'
REPLAY_SUBDIR = 'replay'


class Restored(NamedTuple):
  learner_state: Any
  counts: Dict[str, float]


def atomic_write(path: str, data: bytes) -> None:
  """Writes `data` to `path` through a temporary file and a rename: readers see all or nothing."""
  directory = os.path.dirname(path)
  fd, tmp_path = tempfile.mkstemp(dir=directory, prefix='.tmp-')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    # mkstemp creates 0600; give the file the permissions an ordinary open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    os.replace(tmp_path, path)
  except BaseException:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)
    raise


class RunCheckpointer:
  """Saves and restores one run's learner state, counts and replay."""

  def __init__(self, directory: str, keep: int = 2):
    self._directory = directory
    self._keep = keep
    os.makedirs(os.path.join(directory, REPLAY_SUBDIR), exist_ok=True)

  @property
  def directory(self) -> str:
    return self._directory

  @property
  def replay_directory(self) -> str:
    return os.path.join(self._directory, REPLAY_SUBDIR)

  def replay_checkpointer(self) -> reverb.checkpointers.DefaultCheckpointer:
    """For `reverb.Server(..., checkpointer=...)`: it reloads the newest replay on start."""
    return reverb.checkpointers.DefaultCheckpointer(self.replay_directory)

  def exists(self) -> bool:
    return os.path.exists(os.path.join(self._directory, MANIFEST))

  def save(self, learner_state: Any, counts: Mapping[str, float],
           replay_client: Optional[reverb.Client] = None) -> str:
    """Writes a checkpoint and returns the learner file's path."""
    if replay_client is not None:
      replay_client.checkpoint()
    previous = self._manifest()
    sequence = previous['sequence'] + 1 if previous else 1
    learner_file = f'learner-{sequence:010d}.msgpack'
    atomic_write(os.path.join(self._directory, learner_file),
                 serialization.to_bytes(learner_state))
    manifest = {'learner': learner_file, 'counts': dict(counts), 'sequence': sequence}
    atomic_write(os.path.join(self._directory, MANIFEST),
                 json.dumps(manifest, indent=1, default=float).encode())
    self._prune(learner_file)
    return os.path.join(self._directory, learner_file)

  def restore(self, template_state: Any) -> Optional[Restored]:
    """The last committed checkpoint, shaped like `template_state`; None when there is none."""
    manifest = self._manifest()
    if manifest is None:
      return None
    with open(os.path.join(self._directory, manifest['learner']), 'rb') as f:
      state = serialization.from_bytes(template_state, f.read())
    return Restored(state, manifest['counts'])

  def counts(self) -> Optional[Dict[str, float]]:
    """The counts of the last committed checkpoint, without loading the learner; None if none."""
    manifest = self._manifest()
    return None if manifest is None else dict(manifest['counts'])

  def _manifest(self) -> Optional[Dict[str, Any]]:
    if not self.exists():
      return None
    with open(os.path.join(self._directory, MANIFEST)) as f:
      return json.load(f)

  def _prune(self, current_learner_file: str) -> None:
    learner_files = sorted(f for f in os.listdir(self._directory)
                           if f.startswith('learner-') and f.endswith('.msgpack'))
    for name in learner_files[:-self._keep]:
      if name != current_learner_file:
        os.remove(os.path.join(self._directory, name))
