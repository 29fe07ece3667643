"""An Acme logger that keeps the rows written to it, for tests that read what a part logged."""

import agents  # pylint: disable=unused-import  (patches dm-acme so that acme imports)
from acme.utils import loggers


class RecordingLogger(loggers.Logger):

  def __init__(self):
    self.rows = []

  def write(self, data):
    self.rows.append(dict(data))

  def close(self):
    pass
