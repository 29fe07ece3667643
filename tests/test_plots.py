"""Tests for runner/plots.py on real Acme CSV logs, including damaged and missing ones."""

import os

import agents  # pylint: disable=unused-import  (patches dm-acme so that acme imports)
from acme.utils.loggers import csv as csv_logger
from matplotlib import image as mpl_image
import pytest

from runner import plots

_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'

# (actor_steps, episode_return) rows as an evaluator logs them: several episodes per point.
_ROWS = ((1000, 10.0), (1000, 14.0), (1000, 12.0),
         (2000, 30.0), (2000, 50.0), (2000, 40.0),
         (3000, 80.0))


def _write_log(directory, rows=_ROWS) -> str:
  """A CSV written by Acme's own CSVLogger, with the extra columns an evaluator adds."""
  logger = csv_logger.CSVLogger(str(directory), add_uid=False)
  for steps, episode_return in rows:
    logger.write({'actor_steps': steps, 'episode_return': episode_return,
                  'episode_length': 1000, 'steps_per_second': 123.4})
  logger.close()
  return logger.file_path


def _files(directory) -> list:
  return sorted(os.listdir(directory))


def _assert_valid_png(path) -> None:
  with open(path, 'rb') as f:
    assert f.read(8) == _PNG_MAGIC
  pixels = mpl_image.imread(path)
  assert pixels.ndim == 3 and pixels.shape[0] > 0 and pixels.shape[1] > 0


def test_reads_and_aggregates_acme_log(tmp_path):
  curve = plots.aggregate(plots.read_returns(_write_log(tmp_path)))
  assert curve.steps == [1000, 2000, 3000]
  assert curve.means == pytest.approx([12.0, 40.0, 80.0])
  assert curve.minimums == [10.0, 30.0, 80.0]
  assert curve.maximums == [14.0, 50.0, 80.0]
  assert curve.counts == [3, 3, 1]


def test_writes_valid_png_for_one_and_several_runs(tmp_path):
  path = _write_log(tmp_path / 'a')
  out = tmp_path / 'plots'
  assert plots.plot_learning_curve(path, str(out / 'single.png'), 'cartpole:swingup')
  assert plots.plot_learning_curve({'seed 0': path, 'seed 1': _write_log(tmp_path / 'b')},
                                   str(out / 'multi.png'), 'cartpole:swingup')
  _assert_valid_png(out / 'single.png')
  _assert_valid_png(out / 'multi.png')
  # Only the two PNGs: no temporary file was left behind.
  assert _files(out) == ['multi.png', 'single.png']


def test_truncated_last_line_is_dropped(tmp_path):
  path = _write_log(tmp_path)
  # Cut the last row inside its last field, as a crash mid-write would: it still has every
  # field and parses ('..., 123.4' -> '..., 123'), so only its missing newline gives it away.
  with open(path, 'rb') as f:
    data = f.read()
  assert data.endswith(b'123.4\r\n')
  with open(path, 'wb') as f:
    f.write(data[:-4])
  curve = plots.aggregate(plots.read_returns(path))
  assert curve.steps == [1000, 2000]
  assert plots.plot_learning_curve(path, str(tmp_path / 'curve.png'), 'partial')
  _assert_valid_png(tmp_path / 'curve.png')


def test_bad_rows_are_skipped(tmp_path):
  path = tmp_path / 'logs.csv'
  path.write_text('actor_steps,episode_return\n'
                  '100,1.0\n'
                  'garbage,2.0\n'
                  '200,nan\n'
                  '300\n'
                  '400,4.0,extra\n'
                  '500,5.0\n')
  assert plots.aggregate(plots.read_returns(str(path))).steps == [100, 500]


def test_rows_logged_after_the_checkpoint_a_run_resumed_from_are_dropped(tmp_path):
  # Evaluations of 2 episodes at 1000 and 2000 steps; a checkpoint with 4 evaluator episodes
  # (after the 2000-step evaluation); the process then evaluated 3000 and half of 4000 and
  # died. The resumed run evaluates 3000 and 4000 again, from the restored policy, then 5000;
  # it died once more before its next checkpoint, and resumed again at 4000.
  rows = [(1000, 1.0, 1), (1000, 3.0, 2), (2000, 10.0, 3), (2000, 12.0, 4),
          (3000, 50.0, 5), (3000, 52.0, 6), (4000, 90.0, 7),  # Lost with the first process.
          (3000, 20.0, 5), (3000, 22.0, 6), (4000, 30.0, 7), (4000, 32.0, 8),
          (5000, 70.0, 9),  # Lost with the second.
          (5000, 40.0, 9), (5000, 42.0, 10)]
  path = tmp_path / 'logs.csv'
  path.write_text('actor_steps,episode_return,evaluator_episodes\n' +
                  ''.join(f'{s},{r},{c}\n' for s, r, c in rows))
  curve = plots.aggregate(plots.read_returns(str(path)))
  assert curve.steps == [1000, 2000, 3000, 4000, 5000]
  assert curve.means == pytest.approx([2.0, 11.0, 21.0, 31.0, 41.0])
  assert curve.counts == [2, 2, 2, 2, 2]
  # Without the count (logs that lack it) every row stays, in file order.
  path.write_text('actor_steps,episode_return\n' + ''.join(f'{s},{r}\n' for s, r, _ in rows))
  assert len(plots.read_returns(str(path))) == len(rows)


@pytest.mark.parametrize('content', [None, '', 'actor_steps,episode_return\n',
                                     'actor_steps,episode_ret', 'other,columns\n1,2\n'])
def test_no_data_returns_false_and_writes_nothing(tmp_path, content):
  path = tmp_path / 'logs.csv'
  if content is not None:
    path.write_text(content)
  png = tmp_path / 'out' / 'curve.png'
  assert not plots.plot_learning_curve(str(path), str(png), 'empty')
  assert not plots.plot_learning_curve({'a': str(path), 'b': str(tmp_path / 'missing.csv')},
                                       str(png), 'empty')
  assert not (tmp_path / 'out').exists()


def _write_stddev_log(directory) -> str:
  """An evaluator CSV with WPO's σ columns: two episodes at 0, one at 1000."""
  logger = csv_logger.CSVLogger(str(directory), add_uid=False)
  for steps, episode_return, mean, low, high in ((0, 1.0, 0.5, 0.4, 0.6),
                                                 (0, 3.0, 0.3, 0.1, 0.7),
                                                 (1000, 5.0, 0.2, 0.15, 0.25)):
    logger.write({'actor_steps': steps, 'episode_return': episode_return,
                  'policy_stddev_mean': mean, 'policy_stddev_min': low,
                  'policy_stddev_max': high})
  logger.close()
  return logger.file_path


def test_stddev_per_evaluation_pools_its_episodes(tmp_path):
  curve = plots.read_stddev(_write_stddev_log(tmp_path))
  assert curve.steps == [0, 1000]
  assert curve.means == pytest.approx([0.4, 0.2])  # Mean of the episodes' means.
  assert curve.minimums == pytest.approx([0.1, 0.15])  # Least of their minimums.
  assert curve.maximums == pytest.approx([0.7, 0.25])  # Largest of their maximums.
  # A log without σ (other methods) gives an empty curve, not an error.
  assert plots.read_stddev(_write_log(tmp_path / 'plain')).steps == []


def test_stddev_axis_is_drawn_below_the_returns_where_logged(tmp_path):
  with_stddev = _write_stddev_log(tmp_path / 'a')
  plain = _write_log(tmp_path / 'b')
  assert plots.plot_learning_curve(with_stddev, str(tmp_path / 'sigma.png'), 'wpo')
  assert plots.plot_learning_curve(plain, str(tmp_path / 'plain.png'), 'sac')
  assert plots.plot_learning_curve({'wpo': with_stddev, 'sac': plain},
                                   str(tmp_path / 'both.png'), 'both')
  heights = {name: mpl_image.imread(tmp_path / f'{name}.png').shape[0]
             for name in ('sigma', 'plain', 'both')}
  # 6 in × 100 dpi with the σ axis, 4.5 in without; a legend (two labels) adds 0.3 in a label
  # below the axes, outside them.
  assert heights == {'sigma': 600, 'plain': 450, 'both': 660}
