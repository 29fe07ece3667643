"""The comparison harness: reports from logs, input checks, and a real smoke comparison."""

import csv
import json
import os
import subprocess
import sys

import agents  # pylint: disable=unused-import  (patches dm-acme so that acme imports)
from acme.utils.loggers import csv as csv_logger
import pytest

from runner import method_variants
from runner import report
from runner import workdir as workdir_lib
from test_policy_heads import mixture_components_in_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _compare(workdir, *flags):
  command = [sys.executable, '-m', 'experiments.compare', f'--workdir={workdir}', *flags]
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)


def _fake_run(workdir, task, method, seed, rows):
  """A run directory as the harness leaves it: run.json and an Acme evaluator CSV."""
  directory = report.run_directory(str(workdir), task, method, seed)
  os.makedirs(directory)
  with open(os.path.join(directory, workdir_lib.RUN_SETTINGS), 'w') as f:
    json.dump({'method': method, 'task': task, 'seed': seed}, f)
  logger = csv_logger.CSVLogger(directory, label='evaluator', add_uid=False)
  for steps, episode_return, seconds in rows:
    logger.write({'actor_steps': steps, 'episode_return': episode_return,
                  'wallclock_seconds': seconds})
  logger.close()


def _csv_rows(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_normalised_auc_is_the_mean_return_over_training():
  # Trapezoids: (0+10)/2·100 + (10+30)/2·300 = 6500 over a range of 400.
  assert report.normalised_auc([0, 100, 400], [0.0, 10.0, 30.0]) == pytest.approx(16.25)
  assert report.normalised_auc([0, 1000], [5.0, 5.0]) == pytest.approx(5.0)
  assert report.normalised_auc([1000], [7.0]) == 7.0


def test_reports_from_run_logs(tmp_path):
  # Two evaluation episodes per point for wpo seed 0; the table uses their mean.
  _fake_run(tmp_path, 'cartpole:swingup', 'wpo', 0,
            [(0, 0.0, 1.0), (0, 2.0, 1.0), (100, 10.0, 5.0), (100, 12.0, 5.0)])
  _fake_run(tmp_path, 'cartpole:swingup', 'wpo', 1, [(0, 2.0, 1.0), (100, 20.0, 6.0)])
  _fake_run(tmp_path, 'cartpole:swingup', 'sac', 0, [(0, 3.0, 2.0), (100, 30.0, 9.0)])
  _fake_run(tmp_path, 'reacher:easy', 'sac', 0, [(0, 1.0, 2.0)])
  # A run that has not evaluated yet is left out, not an error.
  os.makedirs(report.run_directory(str(tmp_path), 'reacher:easy', 'wpo', 0))

  runs = report.write_reports(str(tmp_path), ('wpo', 'mpo', 'sac'))
  assert [(r.task, r.method, r.seed) for r in runs] == [
      ('cartpole:swingup', 'sac', 0), ('cartpole:swingup', 'wpo', 0),
      ('cartpole:swingup', 'wpo', 1), ('reacher:easy', 'sac', 0)]

  rows = _csv_rows(tmp_path / 'results.csv')
  assert list(rows[0]) == list(report.RESULTS_COLUMNS)
  wpo0 = [r for r in rows if r['method'] == 'wpo' and r['seed'] == '0']
  assert [(r['env_steps'], float(r['eval_return']), float(r['wallclock_seconds']))
          for r in wpo0] == [('0', 1.0, 1.0), ('100', 11.0, 5.0)]
  assert len(rows) == 7

  markdown = (tmp_path / 'results.md').read_text()
  # Final returns 11 and 20: mean 15.5, sample std 6.4; AUCs (1+11)/2=6 and (2+20)/2=11.
  assert '| cartpole:swingup | 15.5 ± 6.4 (n=2) | 30.0 (n=1) |' in markdown
  assert '| cartpole:swingup | 8.5 ± 3.5 (n=2) | 16.5 (n=1) |' in markdown
  assert '| reacher:easy | – | 1.0 (n=1) |' in markdown
  assert '| task | wpo | sac |' in markdown  # Methods in the given order, absent ones dropped.
  for task in ('cartpole-swingup', 'reacher-easy'):
    with open(tmp_path / 'plots' / f'{task}.png', 'rb') as f:
      assert f.read(8) == _PNG_MAGIC


def _curve(method, task, seed, returns, seconds=None):
  steps = [100_000 * i for i in range(len(returns))]  # [0, 100000] for two evaluations.
  return report.RunCurve(method, task, seed, steps, returns, [seconds] * len(returns))


def test_head_to_head_pairs_seeds_and_below_half_names_the_laggards():
  runs = [_curve('wpo', 'cartpole:swingup', 0, [0, 800], 100.0),
          _curve('wpo', 'cartpole:swingup', 1, [0, 600], 140.0),
          # sac lacks seed 1 here: the pair compares seed 0 only (800 < 850), not 700 < 850.
          _curve('sac', 'cartpole:swingup', 0, [0, 850], 50.0),
          _curve('wpo', 'walker:walk', 0, [0, 300]),
          _curve('sac', 'walker:walk', 0, [0, 700]),
          _curve('mpo', 'walker:walk', 0, [0, 290]),
          _curve('mpo', 'walker:walk', 1, [0, 410])]
  methods = ['wpo', 'sac', 'mpo']
  assert report.head_to_head(runs, methods) == [
      '- wpo ≥ sac on 0 of 2 tasks (none); 2 seed pairs.',
      '- wpo ≥ mpo on 1 of 1 tasks (walker:walk); 1 seed pairs.',
      '- sac ≥ mpo on 1 of 1 tasks (walker:walk); 1 seed pairs.']
  # walker: sac 700 is best; wpo's 300 and mpo's mean (290+410)/2 = 350 are below 350 only for wpo.
  assert report.below_half_of_the_best(runs, methods) == [
      "- walker:walk: wpo 300.0 against sac's 700.0."]

  markdown = report.results_markdown(runs, methods, budget=100_000)
  # Published returns beside ours at their budget: SAC's range over the sources, and the best.
  assert ('| cartpole:swingup | 700.0 ± 141.4 (n=2) | 850.0 (n=1) | – | 835–861 | ≈ 880 |'
          in markdown)
  assert '| walker:walk | 300.0 (n=1) | 700.0 (n=1) | 350.0 ± 84.9 (n=2) | 449–891 | ≈ 963 |' in (
      markdown)
  assert 'CURL (Laskin et al., 2020)' in markdown
  # Wall-clock at the last evaluation, mean over the seeds that logged it.
  assert '| cartpole:swingup | 120 | 50 | – |' in markdown
  assert '| walker:walk | – | – | – |' in markdown
  assert "- walker:walk: wpo 300.0 against sac's 700.0." in markdown
  # A run short of the budget (still going) is counted beside the returns, not averaged into
  # them, and stays out of the comparisons; the steps table shows how far it got.
  going = report.results_markdown(
      runs + [_curve('mpo', 'cartpole:swingup', 0, [999]),
              _curve('wpo', 'cartpole:swingup', 2, [5, 6])._replace(steps=[0, 50_000])],
      methods, budget=100_000)
  assert ('| cartpole:swingup | 700.0 ± 141.4 (n=2), 1 in progress | 850.0 (n=1) | '
          '1 in progress | 835–861 | ≈ 880 |') in going
  assert '| cartpole:swingup | 350.0 ± 70.7 (n=2), 1 in progress | 425.0 (n=1) | 1 in progress |' in (
      going)  # AUCs: (0 + 800) / 2 and (0 + 600) / 2; sac's (0 + 850) / 2.
  assert '| cartpole:swingup | 50000–100000 | 100000 | 0 |' in going
  assert 'n = seeds that reached the budget' in going
  assert '- wpo ≥ mpo on 1 of 1 tasks (walker:walk)' in going
  finished = report.results_markdown(runs + [_curve('mpo', 'cartpole:swingup', 0, [0, 999])],
                                     methods, budget=100_000)
  assert '- wpo ≥ mpo on 1 of 2 tasks (walker:walk)' in finished
  assert "- cartpole:swingup: wpo 700.0 against mpo's 999.0." not in finished  # 700 ≥ 499.5
  # At another budget the published figures do not apply and are left out.
  for other in (None, 20_000):
    assert 'published' not in report.results_markdown(runs, methods, budget=other)


def test_published_anchors_are_for_panel_tasks_with_a_range_per_task():
  from experiments import compare_presets  # pylint: disable=g-import-not-at-top
  assert set(report.published.ANCHORS) == set(compare_presets.PANEL_TASKS)
  for task, anchor in report.published.ANCHORS.items():
    assert len(anchor.sac) == len(report.published.SAC_SOURCES), task
    low, high = anchor.sac_range()
    assert 0 < low <= high <= 1000 and high <= anchor.best <= 1000, task


def test_seed_stddev_pools_runs():
  curve = lambda steps, means, lows, highs: report.plots.Curve(steps, means, lows, highs,
                                                               [1] * len(steps))
  runs = [report.RunCurve('wpo', 't', 0, [0, 10], [0, 0], [None, None],
                          curve([0, 10], [0.5, 0.4], [0.3, 0.2], [0.6, 0.5])),
          report.RunCurve('wpo', 't', 1, [0, 10], [0, 0], [None, None],
                          curve([0, 10], [0.5, 0.2], [0.4, 0.1], [0.9, 0.3]))]
  pooled = report.seed_stddev(runs)
  assert pooled.steps == [0, 10]
  assert pooled.means == pytest.approx([0.5, 0.3])
  assert pooled.minimums == pytest.approx([0.3, 0.1])
  assert pooled.maximums == pytest.approx([0.9, 0.5])


@pytest.mark.parametrize('flag, message', [
    ('--methods=wpo,ppo', "--methods: Unknown method 'ppo'; valid methods: wpo, mpo, sac, td3"),
    ('--tasks=cartpole:swingup,walker:wlak', "--tasks: Unknown task name 'walker:wlak'. Did you "
     "mean 'walker:walk'? Valid names: acrobot:swingup"),
    ('--num_components=3', '--num_components is for mixture policies: add --policy=mixture'),
    ('--policy=beta', 'gaussian|mixture|tanh_gaussian'),
    ('--methods=wpo,wpo[kl_mode=lagrange', '--methods: \'wpo,wpo[kl_mode=lagrange\': "[" without'),
    ('--methods=wpo[kl_weight_stdev=5]', "--methods: 'wpo[kl_weight_stdev=5]': Unknown WPOConfig "
     "field 'kl_weight_stdev'; valid fields: ["),
    ('--methods=wpo[kl_mode=adaptive]', "kl_mode must be one of ('fixed', 'lagrange')"),
    ('--methods=sac[batch_size=8]', 'sac takes no overrides'),
    ('--methods=wpo[]', 'empty overrides'),
    ('--samples_per_insert=0',
     '--samples_per_insert=0.0 is invalid: samples_per_insert must be > 0.'),
    ('--batch_size=0', '--batch_size=0 is invalid: batch_size must be an integer >= 1.'),
    ('--hidden_sizes=', '--hidden_sizes=() is invalid: hidden_sizes must be a non-empty list'),
    ('--hidden_sizes=256,0', '--hidden_sizes=(256, 0) is invalid: hidden_sizes must be a '
     'non-empty list of positive layer sizes'),
    ('--hidden_sizes=256,wide', '--hidden_sizes=256,wide: expected integers.'),
    ('--seeds=0,-1', '--seeds=0,-1 is invalid: seeds must be non-negative integers.'),
    ('--methods=wpo[kl_weight_stddev=5],wpo[kl_weight_stddev=5.0]',
     '--methods lists wpo[kl_weight_stddev=5.0] more than once'),
])
def test_bad_input_fails_before_anything_runs(tmp_path, flag, message):
  workdir = tmp_path / 'comparison'
  result = _compare(workdir, '--preset=smoke', flag)
  assert result.returncode != 0
  assert message in result.stderr
  assert not workdir.exists()


def test_policy_flag_gives_wpo_its_head_and_keeps_mpo_gaussian(tmp_path):
  workdir = tmp_path / 'comparison'
  result = _compare(workdir, '--preset=smoke', '--methods=wpo,mpo', '--policy=mixture',
                    '--num_components=3')
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  runs = workdir / 'runs' / 'cartpole-swingup'
  assert mixture_components_in_checkpoint(runs / 'wpo' / 'seed_0') == 3
  assert mixture_components_in_checkpoint(runs / 'mpo' / 'seed_0') == 0
  _check_smoke_outputs(workdir, ['wpo', 'mpo'])


def _done_times(workdir):
  return {path: os.stat(path).st_mtime_ns
          for path in sorted(workdir.glob('runs/*/*/seed_*/DONE'))}


def _check_smoke_outputs(workdir, methods):
  rows = _csv_rows(workdir / 'results.csv')
  # Smoke preset: 1000 steps (one episode), evaluated before training and at 1000.
  for method in methods:
    steps = [int(r['env_steps']) for r in rows if r['method'] == method]
    assert steps == [0, 1000], (method, steps)
  assert all(float(r['wallclock_seconds']) >= 0 for r in rows)
  markdown = (workdir / 'results.md').read_text()
  assert '| task | ' + ' | '.join(methods) + ' |' in markdown
  with open(workdir / 'plots' / 'cartpole-swingup.png', 'rb') as f:
    assert f.read(8) == _PNG_MAGIC


def test_smoke_comparison_runs_reports_and_resumes(tmp_path):
  workdir = tmp_path / 'comparison'
  methods = ['wpo', 'mpo', 'sac', 'td3', 'd4pg']  # The smoke preset's: every method.
  result = _compare(workdir, '--preset=smoke')
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  _check_smoke_outputs(workdir, methods)
  for method in methods:
    assert (workdir / 'runs' / 'cartpole-swingup' / method / 'seed_0' / 'DONE').exists()

  # Re-run: finished runs are skipped; td3, its DONE removed as if it had been cut short after
  # its final checkpoint, resumes from that checkpoint instead of starting over.
  td3 = workdir / 'runs' / 'cartpole-swingup' / 'td3' / 'seed_0'
  evaluations = len(_csv_rows(td3 / 'logs' / 'evaluator' / 'logs.csv'))
  os.remove(td3 / 'DONE')
  before = _done_times(workdir)
  result = _compare(workdir, '--preset=smoke')
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  for method in ('wpo', 'mpo', 'sac', 'd4pg'):
    assert f'{method} on cartpole:swingup, seed 0: skipped, finished earlier' in result.stdout
  assert 'td3 on cartpole:swingup, seed 0: training' in result.stdout
  after = _done_times(workdir)
  assert {path: after[path] for path in before} == before  # Untouched.
  assert set(after) == set(before) | {td3 / 'DONE'}
  # Resumed at 1000 of 1000 steps: no new evaluation (a fresh start would evaluate at 0 again).
  assert len(_csv_rows(td3 / 'logs' / 'evaluator' / 'logs.csv')) == evaluations
  _check_smoke_outputs(workdir, methods)

  # Other settings in the same workdir are refused before anything runs.
  result = _compare(workdir, '--preset=smoke', '--methods=sac', '--hidden_sizes=16')
  assert result.returncode != 0
  assert 'holds a run with different settings' in result.stderr
  # The replay ratio is shared by every method: SAC's run was made at the preset's.
  result = _compare(workdir, '--preset=smoke', '--methods=sac', '--samples_per_insert=4')
  assert result.returncode != 0
  assert 'holds a run with different settings' in result.stderr
  assert "different settings (['shared_settings.samples_per_insert'])" in result.stderr

  # --report_only rebuilds the reports from the runs and trains nothing.
  os.remove(workdir / 'results.md')
  result = _compare(workdir, '--preset=smoke', '--report_only')
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert 'training' not in result.stdout and 'skipped' not in result.stdout
  assert _done_times(workdir) == after
  _check_smoke_outputs(workdir, methods)
  result = _compare(tmp_path / 'nothing_here', '--preset=smoke', '--report_only')
  assert result.returncode != 0 and 'is not a comparison workdir' in result.stderr
  assert not (tmp_path / 'nothing_here').exists()


def test_smoke_comparison_of_two_wpo_variants(tmp_path):
  workdir = tmp_path / 'comparison'
  variant = 'wpo[kl_weight_stddev=50.0,samples_per_insert=4.0]'
  result = _compare(workdir, '--preset=smoke',
                    '--methods=wpo,wpo[samples_per_insert=4,kl_weight_stddev=50]')
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  _check_smoke_outputs(workdir, ['wpo', variant])  # Two columns, and two curves' worth of rows.
  task = workdir / 'runs' / 'cartpole-swingup'
  directory = task / method_variants.directory_name(variant)
  assert sorted(p.name for p in task.iterdir()) == sorted(['wpo', directory.name])
  settings = json.loads((directory / 'seed_0' / 'run.json').read_text())
  assert settings['method'] == variant
  assert settings['wpo_config']['kl_weight_stddev'] == 50.0
  # The replay ratio is a shared setting: the variant's own value is the one recorded.
  assert settings['shared_settings']['samples_per_insert'] == 4.0
  plain = json.loads((task / 'wpo' / 'seed_0' / 'run.json').read_text())
  assert plain['shared_settings']['samples_per_insert'] == 8.0
  assert plain['wpo_config']['kl_weight_stddev'] == 5.0  # The cpu preset's, which smoke keeps.
  # Fewer SGD steps per actor step for the variant: samples_per_insert 4 against 8.
  steps = {d: json.loads((task / d / 'seed_0' / 'DONE').read_text())['counts']['learner_steps']
           for d in ('wpo', directory.name)}
  assert steps[directory.name] < steps['wpo']
  # Both evaluators log the σ of the evaluated policy on every row.
  for d in ('wpo', directory.name):
    rows = _csv_rows(task / d / 'seed_0' / 'logs' / 'evaluator' / 'logs.csv')
    sigma = [(float(r['policy_stddev_min']), float(r['policy_stddev_mean']),
              float(r['policy_stddev_max'])) for r in rows]
    assert sigma and all(0 < low <= mean <= high < 5 for low, mean, high in sigma)
  # Resume: the variant, spelt differently, is found in its directory and skipped.
  result = _compare(workdir, '--preset=smoke', f'--methods={variant},wpo')
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert f'{variant} on cartpole:swingup, seed 0: skipped, finished earlier' in result.stdout


def test_every_preset_names_valid_tasks_and_methods():
  from agents import environments  # pylint: disable=g-import-not-at-top
  from experiments import compare_presets  # pylint: disable=g-import-not-at-top
  for preset in compare_presets.PRESETS.values():
    for task in preset.tasks:
      environments.validate_task_name(task)
    for method in preset.methods:
      method_variants.resolve(method, preset.settings, preset.wpo_config)


def test_panel_gives_every_method_the_same_data():
  """The issue's panel: 6 tasks × WPO/SAC/MPO × 3 seeds × 100k, 5 evaluation episodes every 10k,
  and for every method's builder batches of 256 at 0.5 SGD steps per environment step."""
  from acme import specs  # pylint: disable=g-import-not-at-top
  from agents import environments  # pylint: disable=g-import-not-at-top
  from agents import methods  # pylint: disable=g-import-not-at-top
  from experiments import compare_presets  # pylint: disable=g-import-not-at-top
  panel = compare_presets.PRESETS['panel']
  assert set(panel.tasks) == {'cartpole:swingup', 'walker:walk', 'cheetah:run', 'finger:spin',
                              'reacher:easy', 'ball_in_cup:catch'}
  assert set(panel.methods) == {'wpo', 'sac', 'mpo'} and panel.seeds == (0, 1, 2)
  assert (panel.num_steps, panel.eval_every, panel.eval_episodes) == (100_000, 10_000, 5)
  spec = specs.make_environment_spec(environments.make_environment('cartpole:swingup', 0))
  for method in panel.methods:
    parts = methods.make_agent_parts(method, panel.settings, panel.wpo_config, spec,
                                     lambda: None)
    built = parts.builder._config  # pylint: disable=protected-access
    assert (built.batch_size, built.samples_per_insert) == (256, 128.0), method
    # The loop's replay ratio: env steps per learner step, and SGD steps per learner step.
    env_steps = parts.transitions_per_learner_step / parts.samples_per_insert
    sgd_steps = parts.transitions_per_learner_step / built.batch_size
    assert sgd_steps / env_steps == 0.5, method
    if method != 'sac':
      assert built.policy_layers == built.critic_layers == (256, 256), method


def test_results_dir_holds_finished_runs_and_resumes_a_fresh_workdir(tmp_path):
  workdir, results = tmp_path / 'comparison', tmp_path / 'committed'
  result = _compare(workdir, '--preset=smoke', '--methods=wpo', f'--results_dir={results}')
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  run = os.path.join('runs', 'cartpole-swingup', 'wpo', 'seed_0')
  assert 'Copied runs/cartpole-swingup/wpo/seed_0' in result.stdout
  assert sorted(os.listdir(results / run)) == sorted(
      ['run.json', 'evaluator_logs.csv', 'learning_curve.png', 'DONE.json'])
  assert (results / run / 'DONE.json').read_bytes() == (workdir / run / 'DONE').read_bytes()
  assert (results / 'results.md').read_text() == (workdir / 'results.md').read_text()
  _check_smoke_outputs(results, ['wpo'])

  # A fresh workdir (another machine) starts from the committed runs: nothing is trained again,
  # and its reports, rebuilt from the copies, are the same.
  fresh = tmp_path / 'fresh'
  result = _compare(fresh, '--preset=smoke', '--methods=wpo', f'--results_dir={results}')
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert '1 finished runs copied from' in result.stdout
  assert 'wpo on cartpole:swingup, seed 0: skipped, finished earlier (1000 steps)' in result.stdout
  assert (fresh / 'results.md').read_text() == (results / 'results.md').read_text()
  assert (fresh / 'results.csv').read_text() == (results / 'results.csv').read_text()
  assert not (fresh / run / workdir_lib.CHECKPOINTS).exists()
  # --report_only seeds a workdir that does not exist yet, and trains nothing.
  seeded = tmp_path / 'seeded'
  result = _compare(seeded, '--preset=smoke', '--methods=wpo', f'--results_dir={results}',
                    '--report_only')
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert 'training' not in result.stdout
  assert (seeded / run / 'DONE').read_bytes() == (results / run / 'DONE.json').read_bytes()
  assert (seeded / 'results.md').read_text() == (results / 'results.md').read_text()

  # Input the results directory cannot serve is refused before anything runs.
  for name, flags, message in [
      ('other_settings', ['--hidden_sizes=16'], 'holds a run with different settings'),
      ('longer', ['--num_steps=2000'], 'finished at 1000 steps, fewer than --num_steps=2000'),
      ('same', [], '--results_dir must differ from --workdir')]:
    target = results if name == 'same' else tmp_path / name
    result = _compare(target, '--preset=smoke', '--methods=wpo', f'--results_dir={results}',
                      *flags)
    assert result.returncode != 0 and message in result.stderr, (name, result.stderr[-2000:])
    assert name == 'same' or not target.exists()
  os.remove(workdir / run / 'DONE')
  committed = (results / run / 'DONE.json').stat().st_mtime_ns
  result = _compare(workdir, '--preset=smoke', '--methods=wpo', f'--results_dir={results}')
  assert result.returncode != 0
  assert ('disagree about these runs; keep one copy of each (move the other away): '
          'runs/cartpole-swingup/wpo/seed_0: unfinished in the workdir, finished in the '
          'results directory') in result.stderr
  assert 'training' not in result.stdout
  assert (results / run / 'DONE.json').stat().st_mtime_ns == committed
