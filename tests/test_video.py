"""Tests for agents/video.py: the renderer probe, MUJOCO_GL handling and a recorded episode."""

import json
import os
import subprocess
import sys

import dm_env
import imageio.v3 as iio
import numpy as np
import pytest

from agents import video

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STEPS, _HEIGHT, _WIDTH = 20, 48, 64

# Records in a fresh process: MUJOCO_GL only counts if set before dm_control is first imported,
# and this test process may already have imported it (other tests load Control Suite tasks).
_RECORD_SCRIPT = '''
import json, sys
from agents import video
video.configure_headless_rendering()
import numpy as np
from agents import environments
environment = environments.make_environment('cartpole:swingup', 0)
zero = np.zeros(environment.action_spec().shape, np.float32)
frames = video.record_episode(environment, lambda observation: zero, sys.argv[1],
                              max_steps={steps}, height={height}, width={width})
print(json.dumps({{'frames': frames}}))
'''.format(steps=_STEPS, height=_HEIGHT, width=_WIDTH)


@pytest.fixture(name='fresh_cache')
def _fresh_cache(monkeypatch):
  """An empty renderer_status cache, restored afterwards."""
  monkeypatch.setattr(video, '_STATUS_CACHE', {})


def _assert_actionable(message: str) -> None:
  assert 'apt-get install' in message and 'libegl1' in message
  assert 'MUJOCO_GL=egl' in message


def test_configure_sets_egl_and_respects_user_value(monkeypatch):
  monkeypatch.delenv('MUJOCO_GL', raising=False)
  assert video.configure_headless_rendering() == 'egl'
  assert os.environ['MUJOCO_GL'] == 'egl'
  monkeypatch.setenv('MUJOCO_GL', 'osmesa')
  assert video.configure_headless_rendering() == 'osmesa'
  assert os.environ['MUJOCO_GL'] == 'osmesa'


def test_unavailable_renderer_is_reported_and_cached(monkeypatch, fresh_cache):
  # 'off' is dm_control's own "no renderer" setting: rendering fails the same way everywhere.
  monkeypatch.setenv('MUJOCO_GL', 'off')
  ok, message = video.renderer_status()
  assert not ok
  assert 'MUJOCO_GL=off' in message and 'No OpenGL rendering backend' in message
  _assert_actionable(message)

  def fail(backend):
    raise AssertionError(f'probed {backend} again')
  monkeypatch.setattr(video, '_probe', fail)
  assert video.renderer_status() == (ok, message)


def test_environment_without_physics_is_rejected(tmp_path):
  class NoPhysics(dm_env.Environment):
    reset = step = observation_spec = action_spec = lambda self, *args: None

  with pytest.raises(ValueError, match='physics'):
    video.record_episode(NoPhysics(), lambda o: o, str(tmp_path / 'x.mp4'))
  assert not os.listdir(tmp_path)


def test_records_episode_or_explains_why_not(monkeypatch, tmp_path):
  if 'MUJOCO_GL' not in os.environ:
    monkeypatch.setenv('MUJOCO_GL', 'egl')
  ok, message = video.renderer_status()
  if not ok:
    # No renderer here: the report must at least say how to get one, and the recording is
    # reported as skipped (not passed).
    _assert_actionable(message)
    pytest.skip(f'no headless renderer, so no episode to record: {message}')

  path = tmp_path / 'videos' / 'episode.mp4'
  result = subprocess.run([sys.executable, '-c', _RECORD_SCRIPT, str(path)], cwd=_REPO_ROOT,
                          env=dict(os.environ), capture_output=True, text=True, timeout=120,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  frames = json.loads(result.stdout.strip().splitlines()[-1])['frames']
  assert frames == _STEPS + 1  # The reset frame, then one per step.

  assert path.stat().st_size > 0
  assert os.listdir(path.parent) == ['episode.mp4']  # No temporary file left behind.
  pixels = iio.imread(path)
  assert pixels.shape[0] in (_STEPS, _STEPS + 1)
  assert pixels.shape[1:] == (_HEIGHT, _WIDTH, 3)
  assert pixels.std() > 0  # A rendered scene, not a blank frame.
