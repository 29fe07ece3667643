"""Crash-safe checkpoints of a run: learner state, step counts and the Reverb replay buffer.

Layout under `directory`:
  ckpt-<n>/                  one checkpoint; n counts saves (10 digits)
    learner.msgpack          the learner's state (any pytree of arrays), flax msgpack
    replay/                  Reverb's checkpoint taken by the same save (absent without a client)
    commit.json              written last: counts, and size + SHA-256 of every other file
  manifest.json              a summary of the newest checkpoint for people and tools; restore does
                             not read it, it verifies the ckpt-<n> directories themselves
  .replay-staging/           where the Reverb server writes; each save moves its output into ckpt-<n>
  .partial-ckpt-<n>/         a save in progress

A save fills `.partial-ckpt-<n>/` and renames it to `ckpt-<n>` (atomic), so a crash at any moment
leaves every earlier checkpoint whole. Restore takes the newest checkpoint whose files all match
their recorded size and SHA-256, and warns, naming the file, about each newer one that does not;
the replay server is started from that same checkpoint's replay (`replay_checkpointer`). Pruning
removes only verified checkpoints older than the `keep` newest verified ones; a damaged one is
left in place. A full disk stops the save with `DiskFullError`, the partial save removed and the
previous checkpoints untouched.

Workdirs of the previous format (`manifest.json` naming `learner-<n>.msgpack`, Reverb's own
checkpoints under `replay/`) restore as the oldest checkpoint; the first new save moves that
manifest to `legacy-manifest.json` and leaves its files in place until pruning retires them.

Why not orbax-checkpoint, and the file-integrity check: `agents.checkpoint_files`, WORKSPACE.md.
"""

import errno
import json
import os
import re
import shutil
from typing import Any, Dict, List, Mapping, NamedTuple, Optional

from absl import logging
from flax import serialization
import reverb

from agents import checkpoint_files
from agents.checkpoint_files import CheckpointError, DiskFullError  # Part of this API.
from agents.atomic_files import atomic_write  # The one write-then-rename helper.

MANIFEST = 'manifest.json'
LEGACY_MANIFEST = 'legacy-manifest.json'
COMMIT = checkpoint_files.COMMIT
LEARNER_FILE = checkpoint_files.LEARNER_FILE
REPLAY_SUBDIR = 'replay'
STAGING_SUBDIR = '.replay-staging'
_CHECKPOINT_NAME = re.compile(r'^ckpt-(\d{10})$')
_TEMPORARY_PREFIX = '.partial-'


class Restored(NamedTuple):
  learner_state: Any
  counts: Dict[str, float]


class _Checkpoint(NamedTuple):
  """One checkpoint on disk, whatever its format."""
  sequence: int
  path: str                   # what a warning names: the checkpoint directory or legacy manifest
  learner_path: str
  replay_path: Optional[str]  # a Reverb checkpoint directory
  counts: Dict[str, float]


class RunCheckpointer:
  """Saves and restores one run's learner state, counts and replay, keeping the last `keep`."""

  def __init__(self, directory: str, keep: int = 3):
    if int(keep) != keep or keep < 1:
      raise ValueError(f'keep={keep!r}: the number of checkpoints to keep must be an integer '
                       '>= 1.')
    self._directory = directory
    self._keep = int(keep)
    self._chosen: Optional[_Checkpoint] = None
    self._chosen_known = False
    # Names of ckpt-<n> directories found good (or written here) and found damaged: each is
    # hashed at most once per object.
    self._verified, self._damaged = set(), set()
    os.makedirs(directory, exist_ok=True)

  @property
  def directory(self) -> str:
    return self._directory

  @property
  def replay_directory(self) -> str:
    """Where the Reverb server writes its checkpoints before a save moves them into ckpt-<n>."""
    return os.path.join(self._directory, STAGING_SUBDIR)

  def replay_checkpointer(self) -> reverb.checkpointers.DefaultCheckpointer:
    """For `reverb.Server(..., checkpointer=...)`: it loads the replay of the checkpoint that
    `restore` returns (the newest one that verifies), or starts empty."""
    # Leftovers of a save that crashed before its commit: the server would load them first.
    shutil.rmtree(self.replay_directory, ignore_errors=True)
    os.makedirs(self.replay_directory)
    chosen = self._newest_usable()
    return reverb.checkpointers.DefaultCheckpointer(
        self.replay_directory,
        fallback_checkpoint_path=chosen.replay_path if chosen is not None else None)

  def exists(self) -> bool:
    """Whether any checkpoint, usable or not, is on disk."""
    return bool(self._checkpoint_names()) or self._legacy_manifest_path() is not None

  def save(self, learner_state: Any, counts: Mapping[str, float],
           replay_client: Optional[reverb.Client] = None) -> str:
    """Writes and commits a checkpoint, prunes old ones, and returns the learner file's path.

    Raises:
      DiskFullError: the disk filled up; the partial save is removed, earlier checkpoints kept.
    """
    sequence = self._next_sequence()
    name = f'ckpt-{sequence:010d}'
    final_dir = os.path.join(self._directory, name)
    for leftover in os.listdir(self._directory):  # From saves killed before their commit.
      if leftover.startswith(_TEMPORARY_PREFIX):
        shutil.rmtree(os.path.join(self._directory, leftover), ignore_errors=True)
    tmp_dir = os.path.join(self._directory, _TEMPORARY_PREFIX + name)
    os.makedirs(tmp_dir)
    counts = dict(counts)
    try:
      checkpoint_files.write_file(os.path.join(tmp_dir, LEARNER_FILE), serialization.to_bytes(learner_state))
      if replay_client is not None:
        shutil.move(replay_client.checkpoint(), os.path.join(tmp_dir, REPLAY_SUBDIR))
      commit = {'format': 2, 'sequence': sequence, 'counts': counts,
                'files': checkpoint_files.file_records(tmp_dir)}
      checkpoint_files.write_file(os.path.join(tmp_dir, COMMIT),
                  json.dumps(commit, indent=1, default=float).encode())
      checkpoint_files.fsync_directory(tmp_dir)
      os.rename(tmp_dir, final_dir)
      checkpoint_files.fsync_directory(self._directory)
    except BaseException as error:
      shutil.rmtree(tmp_dir, ignore_errors=True)
      if checkpoint_files.is_disk_full(error):
        raise self._disk_full(error, f'checkpoint {sequence} could not be written; the partial '
                              'save was removed') from error
      raise
    self._verified.add(name)
    self._chosen = _Checkpoint(sequence, final_dir, os.path.join(final_dir, LEARNER_FILE),
                               os.path.join(final_dir, REPLAY_SUBDIR)
                               if replay_client is not None else None, counts)
    self._chosen_known = True
    try:
      self._write_summary(name, sequence, counts)
    except OSError as error:
      if checkpoint_files.is_disk_full(error):
        raise self._disk_full(error, f'{final_dir} was committed, its summary {MANIFEST} not '
                              '(restore does not need it)') from error
      raise
    self._prune()
    return self._chosen.learner_path

  def _disk_full(self, error: BaseException, what_happened: str) -> DiskFullError:
    try:
      newest = self._newest_usable()
    except CheckpointError:
      newest = None
    return DiskFullError(
        errno.ENOSPC,
        f'The disk holding {self._directory} is full ({error}): {what_happened}. The newest '
        f'good checkpoint ({newest.path if newest else "none"}) is intact. Free space on that '
        'disk (or give the run a --workdir on a larger one) and re-run with the same --workdir '
        'to resume.')

  def restore(self, template_state: Any) -> Optional[Restored]:
    """The newest checkpoint that verifies, shaped like `template_state`; None when there is
    none at all.

    Raises:
      CheckpointError: checkpoints exist but none verifies, or the state does not fit the
        template (a run with other settings wrote it).
    """
    chosen = self._newest_usable()
    if chosen is None:
      return None
    with open(chosen.learner_path, 'rb') as f:
      data = f.read()
    try:
      state = serialization.from_bytes(template_state, data)
    except (ValueError, TypeError, KeyError) as error:
      raise CheckpointError(
          f'{chosen.learner_path} verifies but does not fit this learner ({error}): it was '
          'written by a run with other agent settings. Re-run with the settings in the '
          "workdir's run.json, or use a new --workdir.") from error
    return Restored(state, dict(chosen.counts))

  def counts(self) -> Optional[Dict[str, float]]:
    """The counts of the checkpoint `restore` returns, without loading the learner; None if none."""
    chosen = self._newest_usable()
    return None if chosen is None else dict(chosen.counts)

  # Finding checkpoints.

  def _checkpoint_names(self) -> List[str]:
    """ckpt-<n> directory names, newest first."""
    return sorted((name for name in os.listdir(self._directory) if _CHECKPOINT_NAME.match(name)),
                  reverse=True)

  def _legacy_manifest_path(self) -> Optional[str]:
    for name in (MANIFEST, LEGACY_MANIFEST):
      path = os.path.join(self._directory, name)
      if os.path.exists(path):
        try:
          with open(path) as f:
            manifest = json.load(f)
        except (OSError, ValueError):
          return path  # Damaged: _legacy_checkpoint says so.
        if 'format' not in manifest:
          return path
    return None

  def _legacy_checkpoint(self, manifest_path: str) -> _Checkpoint:
    """The previous format's one committed checkpoint (raises ValueError, naming a damaged file)."""
    try:
      with open(manifest_path) as f:
        manifest = json.load(f)
      learner_path = os.path.join(self._directory, manifest['learner'])
      sequence, counts = int(manifest['sequence']), dict(manifest['counts'])
    except (OSError, ValueError, KeyError, TypeError) as error:
      raise ValueError(f'{manifest_path} is unreadable ({type(error).__name__}: {error})')
    try:
      with open(learner_path, 'rb') as f:
        serialization.msgpack_restore(f.read())  # That format recorded no checksums.
    except FileNotFoundError:
      raise ValueError(f'{learner_path} is missing')
    except Exception as error:  # msgpack raises several types on damaged input.
      raise ValueError(f'{learner_path} is unreadable ({type(error).__name__}: {error})')
    replay_root = os.path.join(self._directory, REPLAY_SUBDIR)
    replays = sorted(name for name in os.listdir(replay_root)
                     if os.path.exists(os.path.join(replay_root, name, 'DONE'))
                     ) if os.path.isdir(replay_root) else []
    return _Checkpoint(sequence, manifest_path, learner_path,
                       os.path.join(replay_root, replays[-1]) if replays else None, counts)

  def _load(self, name: str) -> _Checkpoint:
    path = os.path.join(self._directory, name)
    with open(os.path.join(path, COMMIT)) as f:
      commit = json.load(f)
    replay_path = os.path.join(path, REPLAY_SUBDIR)
    return _Checkpoint(int(commit['sequence']), path, os.path.join(path, LEARNER_FILE),
                       replay_path if os.path.isdir(replay_path) else None,
                       dict(commit['counts']))

  def _newest_usable(self) -> Optional[_Checkpoint]:
    """The newest checkpoint that verifies, found once per object; warns about newer damaged ones."""
    if self._chosen_known:
      return self._chosen
    damaged = []
    chosen = None
    for name in self._checkpoint_names():
      problem = checkpoint_files.problem(os.path.join(self._directory, name))
      if problem is None:
        self._verified.add(name)
        chosen = self._load(name)
        break
      self._damaged.add(name)
      damaged.append(problem)
    legacy_path = self._legacy_manifest_path()
    if chosen is None and legacy_path is not None:
      try:
        chosen = self._legacy_checkpoint(legacy_path)
      except ValueError as problem:
        damaged.append(str(problem))
    for problem in damaged:
      logging.warning('Skipping a damaged checkpoint: %s. It is left in place; the run resumes '
                      'from %s.', problem, chosen.path if chosen else 'nothing')
    if chosen is None and damaged:
      raise CheckpointError(
          f'No checkpoint in {self._directory} can be used: ' + '; '.join(damaged) +
          f'. To start the run afresh, move {self._directory} aside (nothing is deleted).')
    self._chosen, self._chosen_known = chosen, True
    return chosen

  # Writing.

  def _next_sequence(self) -> int:
    sequences = [int(_CHECKPOINT_NAME.match(name).group(1)) for name in self._checkpoint_names()]
    legacy_path = self._legacy_manifest_path()
    if legacy_path is not None:
      try:
        with open(legacy_path) as f:
          sequences.append(int(json.load(f)['sequence']))
      except (OSError, ValueError, KeyError, TypeError):
        pass
    return max(sequences, default=0) + 1

  def _write_summary(self, name: str, sequence: int, counts: Dict[str, float]) -> None:
    legacy = os.path.join(self._directory, MANIFEST)
    if self._legacy_manifest_path() == legacy:
      os.replace(legacy, os.path.join(self._directory, LEGACY_MANIFEST))
    atomic_write(legacy, json.dumps({'format': 2, 'latest': name, 'sequence': sequence,
                                     'learner': os.path.join(name, LEARNER_FILE),
                                     'counts': counts}, indent=1, default=float).encode())

  def _prune(self) -> None:
    """Removes verified checkpoints older than the `keep` newest verified ones."""
    kept = 0
    for name in self._checkpoint_names():
      if name in self._damaged:
        continue  # Left for the user.
      if name not in self._verified:
        if checkpoint_files.problem(os.path.join(self._directory, name)) is not None:
          self._damaged.add(name)
          continue
        self._verified.add(name)
      kept += 1
      if kept > self._keep:
        shutil.rmtree(os.path.join(self._directory, name))
        self._verified.discard(name)
    legacy_path = self._legacy_manifest_path()
    if legacy_path is not None and kept >= self._keep:
      try:
        self._legacy_checkpoint(legacy_path)
      except ValueError:
        return  # Damaged: left for the user.
      self._retire_legacy(legacy_path)

  def _retire_legacy(self, manifest_path: str) -> None:
    """Removes the previous format's files once `keep` new checkpoints verify."""
    os.remove(manifest_path)  # First, so a crash here leaves no half-removed checkpoint in use.
    for name in os.listdir(self._directory):
      if name.startswith('learner-') and name.endswith('.msgpack'):
        os.remove(os.path.join(self._directory, name))
    shutil.rmtree(os.path.join(self._directory, REPLAY_SUBDIR), ignore_errors=True)
