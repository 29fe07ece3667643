"""Write-then-rename: a file appears complete under its name, or not at all.

Every file a run writes for readers (checkpoints' manifests, run.json, plots, videos, DONE markers)
goes through `atomic_output`: the content is written to a unique temporary name in the same
directory (so the rename stays within one filesystem, which makes it atomic), flushed to disk,
given the permissions a plain open() would give, and renamed over the target. On any error,
Ctrl-C included, the temporary file is removed and the previous file under the name is untouched.
"""

import contextlib
import os
import uuid
from typing import Iterator


def _temporary_name(path: str) -> str:
  """A fresh name beside `path`, ending in `path`'s extension (some writers pick a format by it)."""
  directory, name = os.path.split(os.path.abspath(path))
  extension = os.path.splitext(name)[1]
  return os.path.join(directory, f'.{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{extension}')


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
  """Yields a temporary path to write; renames it to `path` when the block ends without error.

  The directory of `path` is created if needed.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  temporary = _temporary_name(path)
  try:
    yield temporary
    # Opened read-only just to flush what the writer (maybe another library) left in the cache.
    fd = os.open(temporary, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise


def atomic_write(path: str, data: bytes) -> None:
  """Writes `data` to `path` through `atomic_output`: readers see all of it or the old file."""
  with atomic_output(path) as temporary:
    with open(temporary, 'xb') as f:  # 'x': the usual umask permissions, and no clobbering.
      f.write(data)
