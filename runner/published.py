"""Published state-based Control Suite returns at 100k environment steps: a comparison report's
side column, for context.

Means over seeds, from the per-seed result CSVs in public repositories (SimbaV2
`results/baseline/*.csv`, Simba `results/*.csv`) and from CURL's Table 1 ("State SAC"). Their
settings differ from ours and from each other (action repeat, SGD steps per environment step,
network sizes; SimbaV2's runs use action repeat 2 and count raw control steps), so they are a
range to read our runs against, not a run of ours. `best` is the highest of BRO, SimbaV2 and
MR.Q in those repositories' CSVs.
"""

from typing import Dict, NamedTuple, Optional, Tuple

# The budget the figures are for: reports show them only for comparisons run to it.
AT_STEPS = 100_000

SAC_SOURCES = ('SimbaV2 repository, results/baseline (SAC)', 'Simba repository, results (SAC)',
               'CURL (Laskin et al., 2020), Table 1, "State SAC"')
BEST_SOURCE = 'the best of BRO, SimbaV2 and MR.Q in the SimbaV2 and Simba repositories\' CSVs'


class Anchor(NamedTuple):
  """SAC's return per source of `SAC_SOURCES` (None where it has no run), and the best method's."""
  sac: Tuple[Optional[float], ...]
  best: float

  def sac_range(self) -> Tuple[float, float]:
    values = [v for v in self.sac if v is not None]
    return min(values), max(values)


ANCHORS: Dict[str, Anchor] = {
    'cartpole:swingup': Anchor(sac=(861, 853, 835), best=880),
    'walker:walk': Anchor(sac=(449, 783, 891), best=963),
    'cheetah:run': Anchor(sac=(178, 329, 616), best=648),
    'finger:spin': Anchor(sac=(475, 614, 811), best=979),
    'reacher:easy': Anchor(sac=(931, 882, 746), best=940),
    'ball_in_cup:catch': Anchor(sac=(972, None, 746), best=979),
}
