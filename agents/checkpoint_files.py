"""The files of one checkpoint: durable writes, their size + SHA-256 records, and the check.

`agents.checkpointing` commits a checkpoint by writing `COMMIT` last, listing every other file
with its size and SHA-256 (`file_records`); `problem` says why a checkpoint directory cannot be
used (naming the file), or None when every file verifies.

Not orbax-checkpoint: its CheckpointManager verifies no file contents on restore, has no fall-back
to an older step, and prunes by step count (`max_to_keep`) even when the newer steps are damaged;
the Reverb replay is outside its model.
"""

import errno
import hashlib
import json
import os
from typing import Any, Dict, Optional

COMMIT = 'commit.json'
LEARNER_FILE = 'learner.msgpack'
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class CheckpointError(Exception):
  """No checkpoint of a run can be used; the message says which files and what to do."""


class DiskFullError(CheckpointError, OSError):
  """The disk filled up during a save; earlier checkpoints are intact."""


def write_file(path: str, data: bytes) -> None:
  """Writes and fsyncs `path` (a new file)."""
  with open(path, 'wb') as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def fsync_directory(path: str) -> None:
  """Makes a rename inside `path` durable."""
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def file_records(directory: str) -> Dict[str, Dict[str, Any]]:
  """{relative path: {'bytes', 'sha256'}} for every file under `directory`."""
  records = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      records[os.path.relpath(path, directory)] = {'bytes': os.path.getsize(path),
                                                   'sha256': sha256(path)}
  return records


def problem(checkpoint_dir: str) -> Optional[str]:
  """Why `checkpoint_dir` cannot be used, naming the file; None when every file verifies."""
  commit_path = os.path.join(checkpoint_dir, COMMIT)
  try:
    with open(commit_path) as f:
      commit = json.load(f)
    files = commit['files']
  except (OSError, ValueError, KeyError, TypeError) as error:
    return f'{commit_path} is unreadable ({type(error).__name__}: {error})'
  if LEARNER_FILE not in files:
    return f'{commit_path} lists no {LEARNER_FILE}'
  for name, record in sorted(files.items()):
    path = os.path.join(checkpoint_dir, name)
    if not os.path.isfile(path):
      return f'{path} is missing'
    size = os.path.getsize(path)
    if size != record['bytes']:
      return f'{path} has {size} bytes, {record["bytes"]} were written (truncated or overwritten)'
    if sha256(path) != record['sha256']:
      return f'{path} does not match its recorded SHA-256 (corrupt)'
  return None


def is_disk_full(error: BaseException) -> bool:
  # Reverb reports a full disk as a RuntimeError carrying the OS message.
  return (isinstance(error, OSError) and error.errno in _DISK_FULL
          or 'No space left on device' in str(error) or 'Disk quota exceeded' in str(error))
