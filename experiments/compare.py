"""Reproduction harness: WPO against MPO, SAC, TD3 and D4PG on the Control Suite, one command.

  python -m experiments.compare --preset=cpu --workdir=runs/compare_cpu
  python -m experiments.compare --preset=paper --workdir=runs/paper --tasks=walker:walk --seeds=0

Runs every (method, task, seed) of the preset, with any of its values replaced by explicit flags,
one after another through `runner.local.run`: the same environment wrappers, the same
evaluation (mean action, `--eval_episodes` episodes every `--eval_every` steps, plus one before
training) and the same hidden-layer sizes, batch size and replay ratio for every method
(`agents.methods.CommonSettings`). Each run lives in `<workdir>/runs/<task>/<method>/seed_<s>/`
(':' in task names becomes '-') with the runner's logs, learning curve and checkpoints.

Re-running with the same --workdir resumes: a run with a DONE marker for at least --num_steps is
skipped; any other resumes from its last checkpoint (a larger --num_steps extends finished runs).
After every run the reports are rebuilt from all runs' logs (`runner/report.py`):
`results.csv`, `results.md` and `plots/<task>.png`; `--report_only` rebuilds them alone (e.g. with
newer report code over runs made by an earlier commit). `--results_dir` keeps a copy to commit
(`runner/results_dir.py`: finished runs without their checkpoints, and the reports), updated
after every run; its finished runs seed a workdir that lacks them, so a comparison resumes on
another machine from what was committed. All input is checked before anything runs.

`--policy=mixture|tanh_gaussian` (with `--num_components`) gives WPO another policy head; MPO
stays Gaussian. Presets (`experiments/compare_presets.py`): `smoke` (seconds per run, for tests),
`cpu` (the whole comparison in about 20 minutes on 2 CPU cores), `panel` (issue 11's six tasks ×
WPO, SAC, MPO × 3 seeds at 100k steps: 25-50 minutes a run, about a day on 2 cores) and `paper`
(the paper's Control Suite set, 3 seeds, 1M steps).
"""


def main() -> None:
  """`python -m experiments.compare` and the console script `wpo-compare`."""
  # pylint: disable=g-import-not-at-top
  from agents import reverb_bind
  # First: it re-executes this command once with the wrapper that confines Reverb to one address.
  reverb_bind.ensure_preloaded()
  from runner import process
  process.prepare()  # MUJOCO_GL and dm-acme's patches, before dm_control and acme are imported.
  from absl import app
  from experiments import compare_cli as cli
  app.run(cli.main)


if __name__ == '__main__':
  main()
