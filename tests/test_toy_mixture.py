"""The mixture toy (experiments/toy_mixture.py): WPO splits a 2-Gaussian mixture onto the optima."""

import json

import numpy as np
import pytest

from experiments import toy_mixture


@pytest.fixture(scope='module')
def wpo_trajectory():
  return toy_mixture.train('wpo', num_steps=60, learning_rate=0.02, num_samples=16, seed=0)


def test_q_has_its_optima_where_declared():
  actions = np.linspace(-4.0, 4.0, 8001)[:, None]
  q = np.asarray(toy_mixture.bimodal_q(actions))
  peaks = actions[1:-1, 0][(q[1:-1] > q[:-2]) & (q[1:-1] > q[2:])]
  np.testing.assert_allclose(peaks, toy_mixture.OPTIMA, atol=1e-3)


def test_wpo_moves_one_component_to_each_optimum(wpo_trajectory):
  means = toy_mixture.component_means(wpo_trajectory)  # [61, 2]
  np.testing.assert_allclose(means[0], toy_mixture.INITIAL_MEANS)
  np.testing.assert_allclose(np.sort(means[-1]), toy_mixture.OPTIMA, atol=0.05)
  expected_q = np.asarray(wpo_trajectory.expected_q)
  assert expected_q[0] < -10.0 and expected_q[-1] > -0.1


def test_summary_and_plot(wpo_trajectory, tmp_path):
  result = toy_mixture.summary({'wpo': wpo_trajectory})
  assert sorted(result['wpo']['final_means']) == pytest.approx(toy_mixture.OPTIMA, abs=0.05)
  json.dumps(result)  # Plain numbers only.
  path = tmp_path / 'toy.png'
  toy_mixture.plot({'wpo': wpo_trajectory}, str(path))
  assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert [p.name for p in tmp_path.iterdir()] == ['toy.png']  # No temporary file left.


def test_the_readme_command_writes_the_png_it_names(tmp_path):
  """README: `python -m experiments.toy_mixture --out=runs/toy_mixture.png` (here under tmp_path,
  with fewer steps): the PNG lands at that path, its directory created, and stdout says so."""
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  png = tmp_path / 'runs' / 'toy_mixture.png'
  result = subprocess.run([sys.executable, '-m', 'experiments.toy_mixture', f'--out={png}',
                           '--steps=5', '--methods=wpo'], cwd=repo, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(png, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  assert json.loads(result.stdout.strip().splitlines()[-1])['png'] == str(png)
  assert os.listdir(tmp_path / 'runs') == ['toy_mixture.png']  # No temporary file left.
