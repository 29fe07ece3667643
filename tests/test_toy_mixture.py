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
