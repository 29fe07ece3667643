"""experiments/exploration_noise.py: the untrained actor's episodes, and its input checks."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, *flags):
  return subprocess.run([sys.executable, '-m', 'experiments.exploration_noise',
                         f'--out={tmp_path / "out"}', *flags], cwd=REPO, capture_output=True,
                        text=True, timeout=600)


def test_counts_rewarded_episodes_of_the_training_actor(tmp_path):
  # cartpole:swingup's reward is dense: every episode earns some, whatever the noise.
  result = _run(tmp_path, '--tasks=cartpole:swingup', '--exponents=0,2', '--init_scales=0.5',
                '--episodes=1')
  assert result.returncode == 0, result.stderr[-3000:]
  table = (tmp_path / 'out' / 'README.md').read_text()
  for exponent in (0, 2):
    assert f'| cartpole:swingup | {exponent} | 0.5 | 1 / 1 |' in table, table


@pytest.mark.parametrize('flag, message', [
    ('--exponents=0,-1', 'exploration_noise_exponent=-1.0 is invalid'),
    ('--init_scales=0', 'init_scale=0.0 is invalid'),
    ('--tasks=cartpole:swingup_sprase', "Did you mean 'cartpole:swingup_sparse'"),
    ('--episodes=0', '--episodes=0 is invalid'),
])
def test_bad_input_fails_before_any_episode(tmp_path, flag, message):
  result = _run(tmp_path, flag)
  assert result.returncode != 0 and message in result.stderr, result.stderr[-3000:]
  assert not (tmp_path / 'out').exists()
