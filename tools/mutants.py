"""`make mutants`: plant known wiring bugs one at a time and check that the fast tests catch each.

A curated list, not mutmut or cosmic-ray, on purpose:
  * precise: each mutant is a bug someone could plausibly write here (a missing γ, the online
    critic in the bootstrap, an unclipped gradient), named, so a survivor says what is unguarded;
    generic operator swaps mostly produce crashes or equivalent mutants that say nothing;
  * fast: each mutant runs only the test files that should catch it, with `-x`, so the whole
    list runs in minutes on 2 cores instead of the hours a generated set of thousands would take;
  * self-checking: every original snippet must occur exactly once in its file, so when the
    source drifts the check fails loudly, naming the mutant to re-point, instead of testing a
    no-op.

The real tree is never edited: the repository's files (tracked and untracked, not ignored) are
copied to a temporary directory, the unmutated copy's tests must pass first, then each mutant is
written into the copy, its tests run, and the original is put back. A crash leaves at most a
mutated temporary copy.

Usage: .venv/bin/python -m tools.mutants [--only NAME ...] [--list]
Exit status: 0 when every mutant is killed; 1 when one survives, a snippet is not found exactly
once, or the unmutated tests fail.
"""

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 900  # Per mutant; a hang counts as killed (the tests did not pass), and says so.


@dataclasses.dataclass(frozen=True)
class Mutant:
  name: str
  path: str  # Relative to the repository root.
  original: str  # Must occur exactly once in the file.
  replacement: str
  description: str  # The bug it models.
  tests: Sequence[str]  # pytest arguments: files or node ids.


_WIRING = 'tests/test_learner_wiring.py'
_LEARNING = 'tests/test_learning.py'
_LOSSES = 'tests/test_losses.py'
_DISTRIBUTIONS = 'tests/test_distributions.py'
_HEADS = 'tests/test_policy_heads.py'
_FRESHNESS = 'tests/test_parameter_freshness.py'
_RESUME = 'tests/test_run_wpo.py::test_resume_after_sigkill_continues_counters_and_policy'
_REPORT = 'tests/test_compare.py::test_head_to_head_pairs_seeds_and_below_half_names_the_laggards'
_EXPLORATION = ('tests/test_wpo_agent.py::'
                'test_coloured_exploration_acts_with_one_fresh_noise_sequence_per_episode')

MUTANTS: List[Mutant] = [
    # The table.
    Mutant('surrogate_sign', 'wpo_jax/losses.py',
           'return -jnp.mean(jnp.sum(score * dq_da, axis=-1))',
           'return jnp.mean(jnp.sum(score * dq_da, axis=-1))',
           'WPO surrogate with the wrong sign (the policy descends Q)', [_LOSSES, _WIRING]),
    Mutant('surrogate_sum_over_samples', 'wpo_jax/losses.py',
           'return -jnp.mean(jnp.sum(score * dq_da, axis=-1))',
           'return -jnp.sum(jnp.sum(score * dq_da, axis=-1))',
           'WPO term summed over samples instead of averaged', [_LOSSES, _WIRING]),
    Mutant('stddev_scale_without_half', 'wpo_jax/losses.py',
           'scale_gradient(stddev, 0.5 * variance)', 'scale_gradient(stddev, variance)',
           'σ preconditioned by σ² instead of σ²/2', [_LOSSES, _WIRING]),
    Mutant('no_preconditioning', 'wpo_jax/learning.py',
           'moved = policy.preconditioned()', 'moved = policy',
           'the learner never preconditions the WPO term', [_WIRING]),
    Mutant('bootstrap_gamma_without_d', 'wpo_jax/learning.py',
           'config.discount * batch.discount, q_t)', 'config.discount, q_t)',
           'bootstrap with γ instead of γ·D (terminals and n-step ignored)', [_WIRING]),
    Mutant('bootstrap_d_without_gamma', 'wpo_jax/learning.py',
           'config.discount * batch.discount, q_t)', 'batch.discount, q_t)',
           'bootstrap with D, dropping the γ that Acme\'s adder leaves to the learner', [_WIRING]),
    Mutant('bootstrap_online_critic', 'wpo_jax/learning.py',
           'q_t = q_value(target_params.critic,', 'q_t = q_value(params.critic,',
           'bootstrap from the online critic instead of the target critic', [_WIRING]),
    Mutant('never_copy_targets', 'wpo_jax/learning.py',
           'optax.periodic_update(params, state.target_params, steps,',
           'optax.periodic_update(state.target_params, state.target_params, steps,',
           'target networks are never refreshed', [_LEARNING]),
    Mutant('mixture_kl_categorical_not_spread', 'wpo_jax/distributions.py',
           'categorical / action_dim', 'categorical',
           'mixture KL: KL(w̄‖w) added to every dimension instead of spread over D',
           [_DISTRIBUTIONS]),
    Mutant('mixture_kl_stddev_unweighted', 'wpo_jax/distributions.py',
           'stddev=jnp.sum(target_weights * per_component.stddev, axis=-2)',
           'stddev=jnp.sum(per_component.stddev, axis=-2)',
           'mixture KL: σ part summed over components without the w̄_k weights',
           [_DISTRIBUTIONS]),
    # Our own.
    Mutant('kl_through_preconditioned', 'wpo_jax/learning.py',
           'kl = policy.kl_from(target_policy)', 'kl = moved.kl_from(target_policy)',
           'KL penalty through the preconditioned parameters (scales the trust region by σ²)',
           [_WIRING]),
    Mutant('kl_weights_swapped', 'wpo_jax/learning.py',
           'config.kl_weight_mean, config.kl_weight_stddev)',
           'config.kl_weight_stddev, config.kl_weight_mean)',
           'fixed KL weights of the mean and σ parts swapped', [_WIRING]),
    Mutant('bootstrap_policy_at_observation', 'wpo_jax/learning.py',
           'networks.policy.apply(target_params.policy, batch.next_observation)',
           'networks.policy.apply(target_params.policy, batch.observation)',
           'bootstrap actions drawn at s instead of s\'', [_WIRING]),
    Mutant('bootstrap_online_policy', 'wpo_jax/learning.py',
           'networks.policy.apply(target_params.policy, batch.next_observation)',
           'networks.policy.apply(params.policy, batch.next_observation)',
           'bootstrap actions from the online policy instead of the target policy', [_WIRING]),
    Mutant('critic_grads_unclipped', 'wpo_jax/learning.py',
           "optax.multi_transform({'policy': clip, 'critic': clip},",
           "optax.multi_transform({'policy': clip, 'critic': optax.identity()},",
           'critic gradient not clipped', [_WIRING]),
    Mutant('dual_grads_unclipped', 'wpo_jax/learning.py',
           'dual_clip = _clip_each(config.max_grad_norm)',
           'dual_clip = _clip_each(None)',
           'dual gradient not clipped', [_WIRING]),
    Mutant('target_copy_off_by_one', 'wpo_jax/learning.py',
           'optax.periodic_update(params, state.target_params, steps,',
           'optax.periodic_update(params, state.target_params, steps + 1,',
           'targets copied one step before the period ends', [_LEARNING]),
    Mutant('lagrange_sums_over_batch', 'wpo_jax/losses.py',
           'kl_mean = jnp.mean(kl.mean, axis=leading_axes)',
           'kl_mean = jnp.sum(kl.mean, axis=leading_axes)',
           'Lagrange penalty sums the KL over the batch (the bound then depends on B)',
           [_LOSSES]),
    Mutant('evaluation_samples', 'agents/wpo/networks.py',
           'distribution.mode() if evaluation else', 'distribution.sample(key, 1)[0] if evaluation else',
           'evaluator acts with a sample instead of the mode', [f'{_HEADS}::test_evaluation_acts_with_the_mode']),
    Mutant('actors_get_target_params', 'agents/wpo/learning.py',
           'params = self._checked_state().params', 'params = self._checked_state().target_params',
           'actors are served the target parameters instead of the online ones',
           [_FRESHNESS, 'tests/test_wpo_agent.py']),
    Mutant('resume_without_parameters', 'runner/wiring.py',
           'learner.restore(restored.learner_state)', 'learner.save()',
           'a resumed local run keeps its fresh parameters (counts and replay still restored)',
           [_RESUME]),
    Mutant('resume_without_replay', 'runner/local.py',
           'checkpointer=checkpointer.replay_checkpointer())', 'checkpointer=None)',
           'a resumed local run starts with an empty replay', [_RESUME]),
    Mutant('coloured_noise_never_advances', 'agents/wpo/networks.py',
           'return jnp.clip(action, -1.0, 1.0), NoiseState(state.noise, state.step + 1)',
           'return jnp.clip(action, -1.0, 1.0), NoiseState(state.noise, state.step)',
           'a coloured-noise actor repeats its first noise all episode', [_EXPLORATION]),
    Mutant('report_averages_runs_still_going', 'runner/report.py',
           'done = [value(r) for r in runs if _reached(r, budget)]',
           'done = [value(r) for r in runs]',
           "a run short of the budget is averaged into the tables' final returns", [_REPORT]),
]


def _repository_files() -> List[str]:
  """Tracked and untracked, not ignored, files of the working tree."""
  listing = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=REPO,
                           check=True, capture_output=True, text=True).stdout
  return [f for f in listing.split('\0') if f and os.path.isfile(os.path.join(REPO, f))]


def _copy_repository(destination: str) -> None:
  for name in _repository_files():
    target = os.path.join(destination, name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy2(os.path.join(REPO, name), target)
  # The shared virtual environment, by link: the copy's own sources come first on sys.path
  # (python -m pytest runs from the copy's root).
  os.symlink(os.path.realpath(os.path.join(REPO, '.venv')), os.path.join(destination, '.venv'))


def check_snippets(mutants: Sequence[Mutant]) -> List[str]:
  """Problems with the list against the current sources: each original exactly once."""
  problems = []
  for mutant in mutants:
    path = os.path.join(REPO, mutant.path)
    if not os.path.exists(path):
      problems.append(f'{mutant.name}: {mutant.path} does not exist')
      continue
    with open(path) as f:
      count = f.read().count(mutant.original)
    if count != 1:
      problems.append(f'{mutant.name}: the original snippet {mutant.original!r} occurs {count} '
                      f'times in {mutant.path} (expected once): re-point the mutant')
  return problems


def _run_tests(root: str, tests: Sequence[str]) -> subprocess.CompletedProcess:
  command = [os.path.join(root, '.venv', 'bin', 'python'), '-m', 'pytest', '-x', '-q',
             '-p', 'no:cacheprovider', *tests]
  environment = dict(os.environ, PYTHONDONTWRITEBYTECODE='1')
  return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=TIMEOUT_S,
                        env=environment, check=False)


def _summary(result: subprocess.CompletedProcess) -> str:
  lines = [l for l in result.stdout.strip().splitlines() if l.strip()]
  return lines[-1] if lines else result.stderr.strip().splitlines()[-1:]


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--only', nargs='*', help='run only these mutants (by name)')
  parser.add_argument('--list', action='store_true', help='list the mutants and exit')
  args = parser.parse_args(argv)
  mutants = MUTANTS
  if args.only:
    unknown = sorted(set(args.only) - {m.name for m in MUTANTS})
    if unknown:
      print(f'Unknown mutants {unknown}; valid: {[m.name for m in MUTANTS]}', file=sys.stderr)
      return 1
    mutants = [m for m in MUTANTS if m.name in args.only]
  if args.list:
    for mutant in mutants:
      print(f'{mutant.name:36s} {mutant.path:26s} {mutant.description}')
    return 0
  problems = check_snippets(mutants)
  if problems:
    print('Mutant snippets do not match the sources:\n  ' + '\n  '.join(problems),
          file=sys.stderr)
    return 1

  start = time.time()
  survivors = []
  with tempfile.TemporaryDirectory(prefix='wpo-mutants-') as root:
    _copy_repository(root)
    all_tests = sorted({t for m in mutants for t in m.tests})
    baseline = _run_tests(root, all_tests)
    print(f'unmutated: {_summary(baseline)} ({time.time() - start:.0f} s)', flush=True)
    if baseline.returncode != 0:
      print(baseline.stdout[-5000:] + baseline.stderr[-3000:], file=sys.stderr)
      print('The unmutated tests fail: fix them before checking mutants.', file=sys.stderr)
      return 1
    for mutant in mutants:
      path = os.path.join(root, mutant.path)
      with open(path) as f:
        source = f.read()
      mutated = source.replace(mutant.original, mutant.replacement)
      begin = time.time()
      try:
        with open(path, 'w') as f:
          f.write(mutated)
        try:
          result = _run_tests(root, mutant.tests)
          outcome = 'killed' if result.returncode != 0 else 'SURVIVED'
          detail = _summary(result)
        except subprocess.TimeoutExpired:
          outcome, detail = 'killed', f'timed out after {TIMEOUT_S} s'
      finally:
        with open(path, 'w') as f:
          f.write(source)
      if outcome == 'SURVIVED':
        survivors.append(mutant.name)
      print(f'{outcome:8s} {mutant.name:36s} {time.time() - begin:5.0f} s  {detail}  '
            f'[{mutant.description}]', flush=True)
  print(f'{len(mutants) - len(survivors)}/{len(mutants)} killed in {time.time() - start:.0f} s'
        + (f'; survivors: {survivors}' if survivors else ''))
  return 1 if survivors else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
