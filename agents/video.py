"""Headless videos of Control Suite episodes.

MuJoCo picks its OpenGL backend from the `MUJOCO_GL` environment variable once, when
dm_control's renderer is first imported; setting it later has no effect in that process. Without
it dm_control tries GLFW first, which needs a display. So a launcher that records videos must
start with

    from agents import video
    video.configure_headless_rendering()   # before anything imports dm_control or mujoco

(this module and `agents` import neither). `MUJOCO_GL=egl` renders without a display: on a GPU
through its EGL driver, elsewhere through Mesa's software rasteriser (llvmpipe). On Debian or
Ubuntu the Mesa route needs `apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1`;
`MUJOCO_GL=osmesa` with `libosmesa6` is the fallback.

`renderer_status()` says whether rendering works before a long run relies on it, and
`record_episode(...)` writes one episode as an MP4.
"""

import os
import subprocess
import sys
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from agents import atomic_files

_MUJOCO_GL = 'MUJOCO_GL'
_DEFAULT_BACKEND = 'egl'
# Tried in this order when MUJOCO_GL is unset; both work without a display.
_HEADLESS_BACKENDS = ('egl', 'osmesa')
_PROBE_TIMEOUT_S = 60.0

HOW_TO_FIX = (
    'To render without a display, install an EGL driver (Debian/Ubuntu: '
    '`apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1`) and set MUJOCO_GL=egl, '
    'or install OSMesa (`apt-get install -y libosmesa6`) and set MUJOCO_GL=osmesa. MUJOCO_GL must '
    'be set before dm_control is imported (see agents.video.configure_headless_rendering).')

# Renders one frame of a one-sphere model with dm_control's own renderer, then prints the GL
# renderer's name (e.g. 'llvmpipe' for software rendering) as the last line.
_PROBE_SCRIPT = r'''
from dm_control import mujoco
physics = mujoco.Physics.from_xml_string(
    '<mujoco><worldbody><light pos="0 0 1"/><geom type="sphere" size=".1"/></worldbody></mujoco>')
pixels = physics.render(height=16, width=16)
assert pixels.shape == (16, 16, 3), pixels.shape
name = 'unknown GL renderer'
try:
  from OpenGL import GL
  with physics.contexts.gl.make_current() as context:
    name = context.call(GL.glGetString, GL.GL_RENDERER).decode()
except Exception:  # The name is only informative.
  pass
print(name)
'''

# MUJOCO_GL value in effect (None: unset) -> renderer_status() result, for this process.
_STATUS_CACHE: Dict[Optional[str], Tuple[bool, str]] = {}


def configure_headless_rendering(backend: str = _DEFAULT_BACKEND) -> str:
  """Sets MUJOCO_GL to `backend` unless the user already set it; returns the value in effect.

  Call it at the very top of a launcher: once dm_control's renderer has been imported the
  backend is fixed, and a warning is printed if that already happened with another value.
  """
  value = os.environ.setdefault(_MUJOCO_GL, backend)
  renderer = sys.modules.get('dm_control._render')
  chosen = getattr(renderer, 'BACKEND', None)
  if renderer is not None and chosen != value:
    print(f'agents.video: dm_control already chose the {chosen!r} OpenGL backend; '
          f'MUJOCO_GL={value} applies to new processes only.', file=sys.stderr)
  return value


def _last_line(text: str) -> str:
  lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
  return lines[-1] if lines else ''


def _probe(backend: str) -> Tuple[bool, str]:
  """Renders one frame in a child process with MUJOCO_GL=backend: (ok, renderer or error)."""
  env = dict(os.environ, **{_MUJOCO_GL: backend})
  try:
    result = subprocess.run([sys.executable, '-c', _PROBE_SCRIPT], env=env, capture_output=True,
                            text=True, timeout=_PROBE_TIMEOUT_S, check=False)
  except subprocess.TimeoutExpired:
    return False, f'rendering timed out after {_PROBE_TIMEOUT_S:.0f} s'
  except OSError as error:
    return False, f'could not start the probe: {error}'
  if result.returncode == 0:
    return True, _last_line(result.stdout)
  # A negative code is a signal: the GL driver crashed the child (which is why it is a child).
  reason = _last_line(result.stderr).rstrip('.') or f'exit status {result.returncode}'
  return False, reason


def _check(requested: Optional[str]) -> Tuple[bool, str]:
  """Probes `requested`, or each headless backend in turn when it is None."""
  if requested is not None:
    ok, detail = _probe(requested)
    if ok:
      return True, f'Headless rendering works with MUJOCO_GL={requested} ({detail}).'
    return False, f'Rendering fails with MUJOCO_GL={requested}: {detail}. {HOW_TO_FIX}'
  failures = []
  for backend in _HEADLESS_BACKENDS:
    ok, detail = _probe(backend)
    if ok:
      return True, (f'Headless rendering works with MUJOCO_GL={backend} ({detail}), but '
                    'MUJOCO_GL is unset in this process: call '
                    'agents.video.configure_headless_rendering() before importing dm_control.')
    failures.append(f'MUJOCO_GL={backend}: {detail}')
  return False, f'No headless renderer works ({"; ".join(failures)}). {HOW_TO_FIX}'


def renderer_status() -> Tuple[bool, str]:
  """(ok, message): whether MuJoCo can render headless with this process's MUJOCO_GL.

  With MUJOCO_GL set, that backend is tried; unset, egl and then osmesa are. Each try renders a
  frame in a child process with a timeout, so a crashing or hanging GL driver cannot take the
  caller down. When not ok the message gives the error and how to get a renderer. The answer is
  cached per MUJOCO_GL value for the life of the process (each probe costs about a second).
  """
  requested = os.environ.get(_MUJOCO_GL)
  if requested not in _STATUS_CACHE:
    _STATUS_CACHE[requested] = _check(requested)
  return _STATUS_CACHE[requested]


def _physics(environment) -> Any:
  """The dm_control physics under `environment` (the wrappers forward attribute lookups)."""
  try:
    return environment.physics
  except AttributeError:
    raise ValueError(f'{environment!r} exposes no dm_control `physics` to render.') from None


def _camera_id(physics) -> int:
  # Suite tasks define camera 0 to follow the body; a model without cameras gets the free one.
  return 0 if physics.model.ncam > 0 else -1


def record_episode(environment, select_action: Callable[[np.ndarray], Any], path: str,
                   max_steps: int = 1000, fps: int = 30, height: int = 240,
                   width: int = 320) -> int:
  """Runs one episode and writes its frames to the MP4 `path`; returns the number of frames.

  Args:
    environment: a dm_env environment over a dm_control task, e.g. from
      `agents.environments.make_environment`. It is reset and stepped, so use one that nothing
      else is using.
    select_action: observation -> action, e.g. an evaluation actor's greedy policy.
    path: the MP4 to write; its directory is created if needed. It appears only once complete.
    max_steps: the most environment steps to run; the episode may end sooner.
    fps: frames per second of the video.
    height, width: frame size in pixels; even sizes avoid rescaling (H.264 needs even sizes),
      and they may not exceed the model's offscreen buffer (640x480 unless the model says more).

  The frames are the reset state and the state after each step, so a full episode of N steps
  gives N + 1 frames. Needs a working headless renderer: see `configure_headless_rendering`.
  """
  import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top  (only needed here)

  physics = _physics(environment)
  camera_id = _camera_id(physics)
  render = lambda: physics.render(height=height, width=width, camera_id=camera_id)

  frames = 0
  with atomic_files.atomic_output(path) as temp_path:
    # Frames are streamed to ffmpeg: a 1000-step episode at 320x240 would be 230 MB in memory.
    with imageio.get_writer(temp_path, format='FFMPEG', fps=fps, codec='libx264',
                            pixelformat='yuv420p', macro_block_size=2) as writer:
      timestep = environment.reset()
      writer.append_data(render())
      frames += 1
      for _ in range(max_steps):
        if timestep.last():
          break
        timestep = environment.step(select_action(timestep.observation))
        writer.append_data(render())
        frames += 1
  return frames
