"""The one explicit set-up of a process that runs experiments; nothing does it at import.

Entry points call `reverb_bind.ensure_preloaded()` (it may re-execute the command) and then
`prepare()`, both before importing anything that imports dm_control; tests' conftest calls
`prepare()`; Ray workers get MUJOCO_GL from the launcher's environment and call
`acme_compat.apply()` themselves.
"""

from agents import acme_compat
from agents import video


def prepare() -> None:
  """MUJOCO_GL for headless rendering, then dm-acme's patches (`agents.acme_compat.apply`).

  MUJOCO_GL must be set before dm_control is first imported: unset, dm_control loads GLFW, which
  on a machine without a display warns "The DISPLAY environment variable is missing".
  """
  video.configure_headless_rendering()
  acme_compat.apply()
