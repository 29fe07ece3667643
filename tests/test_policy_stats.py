"""σ statistics of the evaluated policy (agents/policy_stats.py) and resumable CSV logs."""

import csv

import agents  # pylint: disable=unused-import  (patches dm-acme so that acme imports)
from acme import core
import dm_env
import numpy as np
import pytest

from agents import csv_logs
from agents import policy_stats


class _Source(core.VariableSource):
  def __init__(self):
    self.calls = 0

  def get_variables(self, names):
    self.calls += 1
    return [{'scale': float(self.calls)} for _ in names]


def test_observer_uses_the_states_acted_in_and_the_evaluations_parameters():
  inner = _Source()
  source = policy_stats.VariablesPerEvaluation(inner)
  # σ = scale · |observation|: scale is the parameter, so the result shows which was used.
  observer = policy_stats.PolicyStddevObserver(
      lambda params, observation: params['scale'] * np.abs(observation),
      lambda: source.current('policy'))
  source.new_evaluation()
  assert source.get_variables(['policy']) == [{'scale': 1.0}]  # The actor's fetch: scale 1.
  observer.observe_first(None, dm_env.restart(np.array([1.0, -2.0])))
  # The actor's fetch at a later step gets the same parameters, without asking the learner.
  assert source.get_variables(['policy']) == [{'scale': 1.0}] and inner.calls == 1
  observer.observe(None, dm_env.transition(0.0, np.array([3.0, 0.5])), np.zeros(1))
  # The last observation follows the last action: no action is taken there.
  observer.observe(None, dm_env.termination(0.0, np.array([100.0, 100.0])), np.zeros(1))
  metrics = observer.get_metrics()
  assert metrics == pytest.approx({'policy_stddev_mean': 6.5 / 4, 'policy_stddev_min': 0.5,
                                   'policy_stddev_max': 3.0})
  # The evaluation's second episode plays, and is measured with, the same parameters.
  source.get_variables(['policy'])
  observer.observe_first(None, dm_env.restart(np.array([1.0, 1.0])))
  observer.observe(None, dm_env.termination(0.0, np.array([5.0, 5.0])), np.zeros(1))
  assert observer.get_metrics()['policy_stddev_max'] == pytest.approx(1.0)
  assert inner.calls == 1
  # The next evaluation fetches anew (scale 2), and its episodes are measured with that.
  source.new_evaluation()
  assert source.get_variables(['policy']) == [{'scale': 2.0}]
  observer.observe_first(None, dm_env.restart(np.array([1.0, 1.0])))
  observer.observe(None, dm_env.termination(0.0, np.array([5.0, 5.0])), np.zeros(1))
  assert observer.get_metrics()['policy_stddev_max'] == pytest.approx(2.0)


def test_per_evaluation_source_fetches_each_name_once_per_evaluation():
  inner = _Source()
  source = policy_stats.VariablesPerEvaluation(inner)
  assert source.current('policy') == {'scale': 1.0}  # Nothing was asked yet: fetched now.
  assert source.current('policy') == {'scale': 1.0} and inner.calls == 1
  # Only the name not fetched yet goes to the learner.
  assert source.get_variables(['critic', 'policy']) == [{'scale': 2.0}, {'scale': 1.0}]
  assert inner.calls == 2
  source.new_evaluation()
  assert source.current('policy') == {'scale': 3.0} and inner.calls == 3


def _logger(directory):
  return csv_logs.ResumableCSVLogger(str(directory), label='evaluator', add_uid=False,
                                     flush_every=1)


def test_resumed_csv_with_new_columns_keeps_the_header_and_every_row(tmp_path):
  logger = _logger(tmp_path)
  logger.write({'actor_steps': 0, 'episode_return': 1.0})
  logger.close()
  path = logger.file_path
  with open(path, 'a') as f:
    f.write('1000,2')  # A row cut off by a crash: no newline.
  logger = _logger(tmp_path)
  logger.write({'actor_steps': 2000, 'episode_return': 3.0, 'policy_stddev_mean': 0.5})
  logger.close()
  with open(path) as f:
    rows = list(csv.reader(f))
  assert rows == [['actor_steps', 'episode_return'], ['0', '1.0'], ['1000', '2'],
                  ['2000', '3.0']]
  # An old log that has a column a new row lacks gets an empty field, not a shifted row.
  logger = _logger(tmp_path)
  logger.write({'actor_steps': 3000})
  logger.close()
  with open(path) as f:
    assert list(csv.reader(f))[-1] == ['3000', '']


def test_fresh_csv_takes_the_first_rows_columns(tmp_path):
  logger = _logger(tmp_path)
  logger.write({'b': 1, 'a': 2})
  logger.close()
  with open(logger.file_path) as f:
    assert list(csv.reader(f)) == [['a', 'b'], ['2', '1']]
