"""The launcher's learner-device line and its record in run.json."""

import json
import os
from typing import Optional

from agents import checkpointing
from wpo_jax import devices
# The launchers and Ray workers name devices through this module alone.
from wpo_jax.devices import learner_device  # pylint: disable=unused-import

# run.json's key for the device of the latest launch. A record, not a setting: a run may resume
# on another machine, so the resume check (experiments.training.changed_settings) skips it.
RUN_JSON_KEY = 'learner_device'


def announce(workdir: str, device: Optional[str] = None) -> str:
  """Prints 'learner device: <device>' and records it in `workdir`/run.json. Returns the line.

  Args:
    workdir: holds the run.json the launcher wrote (left alone where there is none).
    device: `wpo_jax.devices.learner_device()` as the learner's process reported it; by default
      this process's (the local run's learner runs here).
  """
  device = device or devices.learner_device()
  line = f'learner device: {device}'
  print(line, flush=True)
  path = os.path.join(workdir, 'run.json')
  if os.path.exists(path):
    with open(path) as f:
      settings = json.load(f)
    settings[RUN_JSON_KEY] = device
    checkpointing.atomic_write(path, json.dumps(settings, indent=1).encode())
  return line
