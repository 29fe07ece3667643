"""Acme's CSV logger, safe to resume when the logged columns change between sessions.

Acme's `CSVLogger` appends to an existing logs.csv but takes its columns from the first row it
writes in this session and writes no header to a non-empty file. When a resumed run logs other
columns than the session that wrote the header (e.g. a newer version adds σ statistics to the
evaluator rows), its rows no longer line up with the header, and readers drop them. This one
keeps an existing file's header: later rows fill its columns (a column it lacks is left out, one
it has but the row lacks is left empty), so every row stays readable. A last line cut off
mid-write by a crash is ended first, so the next row starts on a line of its own.
"""

import csv
import io
import os

import agents  # noqa: F401  (dm-acme patches, before acme is imported)
from acme.utils.loggers import csv as acme_csv


class ResumableCSVLogger(acme_csv.CSVLogger):
  """`acme.utils.loggers.CSVLogger` that adopts the header of a non-empty file (see above)."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    path = self.file_path
    if not os.path.exists(path) or os.path.getsize(path) == 0:
      return
    with open(path, newline='') as f:
      header = next(csv.reader(io.StringIO(f.readline())), None)
      f.seek(0, os.SEEK_END)
      f.seek(f.tell() - 1)
      ends_with_newline = f.read(1) == '\n'
    if not ends_with_newline:
      self._file.write('\n')
    if header:
      self._writer = csv.DictWriter(self._file, fieldnames=header, extrasaction='ignore')
