"""Learning-curve plots from Acme CSV logs.

`plot_learning_curve({'wpo': 'runs/a/logs/evaluator/logs.csv'}, 'curve.png', 'walker:walk')`
draws the mean evaluation return against environment steps (`actor_steps`), one line per label,
shading the min–max spread where several episodes were logged at the same step.
`plot_curves({'wpo': curve, ...}, ...)` draws already aggregated `Curve`s the same way (e.g. one per
method, aggregated over seeds). Where the logs carry the policy's σ (WPO's evaluator rows:
policy_stddev_mean/min/max, `agents.policy_stats`), a smaller axis below the returns shows σ's
mean and its min–max band per evaluation, in the colour of the run's return curve.

Logs may belong to a run that is still going or that crashed: a missing or empty file, a row cut
off mid-write or a row that does not parse is skipped, never raised; rows a resumed run logged
again after its checkpoint replace the dead process's (`read_returns`). The PNG is written to a
temporary file and renamed into place, so a reader never sees half an image.

Only matplotlib's Agg canvas is used (no pyplot), so this works without a display and leaves the
process-wide matplotlib backend alone.
"""

import csv
import io
import math
import os
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from agents import atomic_files

STEP_COLUMN = 'actor_steps'
RETURN_COLUMN = 'episode_return'
STDDEV_COLUMNS = ('policy_stddev_mean', 'policy_stddev_min', 'policy_stddev_max')
# A count every evaluator row carries that a checkpoint restores: it falls back where a run
# resumed from one, where steps can only repeat (see `read_returns`).
TIMELINE_COLUMN = 'evaluator_episodes'


class Curve(NamedTuple):
  """Per evaluation point, sorted by step: mean, min and max return, and episode count."""
  steps: List[float]
  means: List[float]
  minimums: List[float]
  maximums: List[float]
  counts: List[int]


def _read_complete_text(path: str) -> str:
  """The file's text without a final line that lacks its newline ('' if unreadable).

  A line without a newline at the end of the file is one the writer had not finished, so even
  when it parses its last number may be cut short (e.g. 1234.5 read as 12); drop it.
  """
  try:
    with open(path, 'r', newline='', errors='replace') as f:
      text = f.read()
  except OSError:
    return ''
  if text.endswith('\n'):
    return text
  cut = text.rfind('\n')
  return text[:cut + 1] if cut >= 0 else ''


def _parse_float(value: Optional[str]) -> Optional[float]:
  """A finite float from a CSV field, or None for anything else (missing, garbled, nan, inf)."""
  try:
    number = float(value)
  except (TypeError, ValueError):
    return None
  return number if math.isfinite(number) else None


def read_returns(path: str, step_column: str = STEP_COLUMN,
                 return_column: str = RETURN_COLUMN) -> List[Tuple[float, float]]:
  """(step, return) for every well-formed row of the CSV at `path`, in file order, on the run's
  surviving timeline.

  A run that resumed from a checkpoint may have logged rows after that checkpoint in the process
  that died (a crash, SIGKILL, a fall-back to an older checkpoint); the resumed run logs those
  steps again from the restored state. Where the log has `TIMELINE_COLUMN`, a row whose count is
  not above every earlier row's marks such a resume, and the earlier rows at or past its count
  are dropped: the curve is the one the finished run actually followed, with no step counted
  twice.
  """
  text = _read_complete_text(path)
  if not text:
    return []
  reader = csv.reader(io.StringIO(text, newline=''))
  header = next(reader, None)
  if not header or step_column not in header or return_column not in header:
    return []
  step_index, return_index = header.index(step_column), header.index(return_column)
  timeline_index = header.index(TIMELINE_COLUMN) if TIMELINE_COLUMN in header else None
  points, counts = [], []  # With the timeline column, counts increase along points.
  for row in reader:
    # A row with a different number of fields is damaged; its columns cannot be trusted.
    if len(row) != len(header):
      continue
    step, episode_return = _parse_float(row[step_index]), _parse_float(row[return_index])
    if step is None or episode_return is None:
      continue
    if timeline_index is not None:
      count = _parse_float(row[timeline_index])
      if count is None:
        continue
      while counts and counts[-1] >= count:  # Logged after the checkpoint this row resumed from.
        counts.pop()
        points.pop()
      counts.append(count)
    points.append((step, episode_return))
  return points


def aggregate(points: List[Tuple[float, float]]) -> Curve:
  """Groups (step, return) pairs by step into a `Curve`."""
  by_step: Dict[float, List[float]] = {}
  for step, episode_return in points:
    by_step.setdefault(step, []).append(episode_return)
  steps = sorted(by_step)
  returns = [by_step[s] for s in steps]
  return Curve(steps=steps,
               means=[sum(r) / len(r) for r in returns],
               minimums=[min(r) for r in returns],
               maximums=[max(r) for r in returns],
               counts=[len(r) for r in returns])


def read_stddev(path: str, step_column: str = STEP_COLUMN) -> Curve:
  """σ per evaluation from an evaluator CSV: the mean of its episodes' σ means, the least of their
  minimums and the largest of their maximums (an empty Curve where σ was not logged)."""
  mean, low, high = (aggregate(read_returns(path, step_column, column))
                     for column in STDDEV_COLUMNS)
  return stddev_curve(mean, low, high)


def stddev_curve(mean: Curve, low: Curve, high: Curve) -> Curve:
  """Combines the aggregates of σ's mean, min and max columns over the steps all three have."""
  low_at = dict(zip(low.steps, low.minimums))
  high_at = dict(zip(high.steps, high.maximums))
  keep = [i for i, step in enumerate(mean.steps) if step in low_at and step in high_at]
  return Curve(steps=[mean.steps[i] for i in keep], means=[mean.means[i] for i in keep],
               minimums=[low_at[mean.steps[i]] for i in keep],
               maximums=[high_at[mean.steps[i]] for i in keep],
               counts=[mean.counts[i] for i in keep])


def _draw(axes, curve: Curve, label: Optional[str], color: Optional[str] = None,
          band: bool = False) -> str:
  """One mean line, plus its min–max band where any step has more than one episode (or
  always, with `band`). Returns the line's colour."""
  line, = axes.plot(curve.steps, curve.means, marker='o', markersize=3, label=label,
                    color=color)
  if band or max(curve.counts) > 1:
    axes.fill_between(curve.steps, curve.minimums, curve.maximums,
                      color=line.get_color(), alpha=0.2, linewidth=0)
  return line.get_color()


def save_figure_atomically(figure: Figure, png_path: str) -> None:
  """Writes `figure` as a PNG next to `png_path`, then renames it over `png_path`."""
  with atomic_files.atomic_output(png_path) as temporary:
    with open(temporary, 'xb') as f:
      FigureCanvasAgg(figure).print_png(f)


def plot_learning_curve(csv_paths: Union[Mapping[str, str], str], png_path: str,
                        title: str) -> bool:
  """Plots mean return vs environment steps from Acme CSV logs into `png_path`.

  Args:
    csv_paths: one CSV path, or {label: CSV path} for one labelled line per run. Each CSV needs
      the columns `actor_steps` and `episode_return`.
    png_path: where the PNG goes; its directory is created if needed.
    title: the plot's title.

  Returns:
    True if a PNG was written; False (and nothing written) when no file gave a usable row.
  """
  labelled = {None: csv_paths} if isinstance(csv_paths, str) else dict(csv_paths)
  return plot_curves({label: aggregate(read_returns(path)) for label, path in labelled.items()},
                     png_path, title,
                     stddevs={label: read_stddev(path) for label, path in labelled.items()})


def plot_curves(curves: Mapping[Optional[str], Curve], png_path: str, title: str,
                stddevs: Optional[Mapping[Optional[str], Curve]] = None) -> bool:
  """Plots each `Curve` (mean line, min–max band) against environment steps into `png_path`.

  Keys are legend labels (None: no legend). `stddevs` holds σ curves (`read_stddev`) by the same
  labels; where any is non-empty, a second axis below shows them. Returns False, writing
  nothing, if every return curve is empty.
  """
  curves = {label: curve for label, curve in curves.items() if curve.steps}
  if not curves:
    return False
  stddevs = {label: curve for label, curve in (stddevs or {}).items()
             if curve.steps and label in curves}

  labelled = any(label is not None for label in curves)
  # Constrained layout makes room for a legend outside the axes, where it covers no curve.
  figure = Figure(figsize=(7, (6.0 if stddevs else 4.5) + (0.3 * len(curves) if labelled else 0)),
                  dpi=100, layout='constrained')
  if stddevs:
    axes, stddev_axes = figure.subplots(2, 1, sharex=True,
                                        gridspec_kw={'height_ratios': (3, 1)})
  else:
    axes, stddev_axes = figure.add_subplot(), None
  colors = {label: _draw(axes, curve, label) for label, curve in curves.items()}
  axes.set_ylabel('Episode return')
  axes.set_title(title)
  axes.grid(True, alpha=0.3)
  if labelled:
    figure.legend(loc='outside lower center', ncols=1, fontsize='small', frameon=False)
  if stddev_axes is None:
    axes.set_xlabel('Environment steps')
  else:
    for label, curve in stddevs.items():
      _draw(stddev_axes, curve, None, color=colors[label], band=True)
    stddev_axes.set_ylabel('policy σ\n(mean, min–max)')
    stddev_axes.set_xlabel('Environment steps')
    stddev_axes.grid(True, alpha=0.3)
  save_figure_atomically(figure, png_path)
  return True
