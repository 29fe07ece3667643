"""Throughput of distributed WPO against the local loop, and the per-step cost of acting.

  python -m experiments.bench_distributed [--num_steps=10000] [--env=cartpole:swingup]

Part 1 launches `experiments.run_wpo` three times with the same settings and budget: the local
loop, then --distributed with 1 and with 2 actors. Rates are steady-state figures read from each
run's learner log, whose rows carry `actor_steps`, `learner_steps` and `learner_walltime` (the
learner's clock from its first SGD step), so start-up, compilation and the replay warm-up are left
out; the launch's whole wall-clock is reported beside them. Evaluation runs only at the start and
the end, outside the measured window.

Part 2 times, in this process, raw `env.step` against one training actor's full step:
`select_action` (policy inference) + `observe` (n-step adder, Reverb insert over loopback) +
`env.step`, on the same task with the same networks.

Prints a Markdown table and writes it into BENCHMARKS.md (between this benchmark's markers).
"""

from agents import video  # pylint: disable=g-bad-import-order
video.configure_headless_rendering()

import csv  # pylint: disable=g-import-not-at-top,wrong-import-position
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

from absl import app
from absl import flags
from acme import specs
import jax
import numpy as np
import reverb

from agents import environments
from agents import methods
from agents import wpo
from runner import workdir as workdir_lib

_ENV = flags.DEFINE_string('env', 'cartpole:swingup', 'Control Suite task.')
_STEPS = flags.DEFINE_integer('num_steps', 10_000, 'Environment steps per launch.')
_ACT_STEPS = flags.DEFINE_integer('act_steps', 3_000, 'Steps per timing in part 2.')
_OUT = flags.DEFINE_string('out', 'BENCHMARKS.md', 'Markdown file to update.')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESET = 'cpu'
# Small networks: a 2-core machine runs all three launches in a few minutes.
OVERRIDES = {'policy_layers': (64, 64), 'critic_layers': (64, 64), 'num_action_samples': 8,
             'batch_size': 64, 'samples_per_insert': 16.0, 'min_replay_size': 1000,
             'variable_update_period': 100}
CONFIG = [f'--preset={PRESET}'] + [
    f'--config={name}={",".join(map(str, value)) if isinstance(value, tuple) else value}'
    for name, value in OVERRIDES.items()]
START_MARK = '<!-- bench_distributed:start -->'
END_MARK = '<!-- bench_distributed:end -->'


def launch(workdir: str, extra: List[str]) -> float:
  """Runs one training launch to completion; returns its wall-clock seconds."""
  command = [sys.executable, '-m', 'experiments.run_wpo', f'--env={_ENV.value}',
             f'--workdir={workdir}', f'--num_steps={_STEPS.value}',
             f'--eval_every={_STEPS.value}', '--eval_episodes=1', '--progress=false',
             '--video=false', *CONFIG, *extra]
  start = time.time()
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800)
  if result.returncode != 0:
    raise RuntimeError(f'{" ".join(command)} failed:\n{result.stdout[-2000:]}'
                       f'{result.stderr[-2000:]}')
  return time.time() - start


def steady_rates(workdir: str) -> Dict[str, float]:
  """Env and SGD steps per second of the learner's clock, first 10% of its rows left out."""
  with open(workdir_lib.log_csv(workdir, 'learner')) as f:
    rows = [r for r in csv.DictReader(f) if float(r['learner_steps']) > 0]
  rows = rows[len(rows) // 10:]
  first, last = rows[0], rows[-1]
  seconds = float(last['learner_walltime']) - float(first['learner_walltime'])
  return {
      'env_steps_per_s': (float(last['actor_steps']) - float(first['actor_steps'])) / seconds,
      'sgd_steps_per_s': (float(last['learner_steps']) - float(first['learner_steps'])) / seconds,
      'window_s': seconds,
  }


def throughput_rows() -> List[Dict[str, float]]:
  results = []
  with tempfile.TemporaryDirectory() as root:
    for name, extra in (('local loop', []),
                        ('distributed, 1 actor', ['--distributed', '--num_actors=1']),
                        ('distributed, 2 actors', ['--distributed', '--num_actors=2'])):
      workdir = os.path.join(root, name.replace(' ', '_').replace(',', ''))
      wall = launch(workdir, extra)
      results.append({'name': name, 'wall_s': wall, **steady_rates(workdir)})
      print(f'{name}: {results[-1]}', flush=True)
  return results


def _timed_steps(environment, num_steps: int, act) -> float:
  """Seconds per step of `act(timestep) -> timestep`: whole episodes, at least `num_steps`.

  Whole episodes, so that the adder never holds a half-written step when the next timing starts.
  """
  steps = 0
  start = time.perf_counter()
  while steps < num_steps:
    timestep = environment.reset()
    act(timestep, first=True)
    while not timestep.last():
      timestep = act(timestep)
      steps += 1
  return (time.perf_counter() - start) / steps


def acting_cost() -> Dict[str, float]:
  """Microseconds per step: raw env.step vs select_action + observe (Reverb insert) + env.step."""
  environment = environments.make_environment(_ENV.value, 0)
  spec = specs.make_environment_spec(environment)
  parts = methods.wpo_agent_parts(wpo.make_config(PRESET, **OVERRIDES), spec, lambda: None,
                                    single_process=True)  # Never blocks: nothing samples here.
  server = reverb.Server(parts.builder.make_replay_tables(spec), port=None)
  client = reverb.Client(f'localhost:{server.port}')
  learner = parts.builder.make_learner(jax.random.PRNGKey(0), parts.networks,
                                       iter(()), client)  # Only its initial parameters are used.
  actor = parts.builder.make_actor(jax.random.PRNGKey(1), parts.behaviour_policy,
                                   parts.builder.make_adder(client), variable_source=learner)
  zero = np.zeros(spec.actions.shape, spec.actions.dtype)

  def raw(timestep, first=False):
    return None if first else environment.step(zero)

  def acting(timestep, first=False):
    if first:
      actor.observe_first(timestep)
      return None
    action = actor.select_action(timestep.observation)
    next_timestep = environment.step(action)
    actor.observe(action, next_timestep)
    actor.update()
    return next_timestep

  _timed_steps(environment, 1, acting)  # Compiles the policy and opens the writer.
  raw_s = min(_timed_steps(environment, _ACT_STEPS.value, raw) for _ in range(2))
  acting_s = min(_timed_steps(environment, _ACT_STEPS.value, acting) for _ in range(2))
  server.stop()
  return {'raw_us': raw_s * 1e6, 'acting_us': acting_s * 1e6}


def machine() -> str:
  model = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      model = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
  except (OSError, StopIteration):
    pass
  return f'{os.cpu_count()}-core {platform.machine()} CPU ({model}), no GPU'


def load() -> str:
  """The 1-minute load average: other work on the machine skews every figure."""
  return f'{os.getloadavg()[0]:.1f}'


def markdown(rows, acting, description: str, loads) -> str:
  local = rows[0]
  lines = [
      START_MARK,
      '## Distributed (Ray) vs the local loop',
      '',
      f'`python -m experiments.bench_distributed` on {_ENV.value}, {_STEPS.value} environment '
      f'steps per launch, `{" ".join(CONFIG)}`. Machine: {description}; 1-minute load average '
      f'{loads[0]} at the start and {loads[1]} at the end (other jobs shared the cores). '
      'Steady-state rates from the learner log (start-up, compilation and replay warm-up '
      'excluded); wall = the whole launch.',
      '',
      '| run | env steps/s | × local | SGD steps/s | × local | wall s |',
      '|---|---|---|---|---|---|',
  ]
  for row in rows:
    lines.append(
        f'| {row["name"]} | {row["env_steps_per_s"]:.0f} | '
        f'{row["env_steps_per_s"] / local["env_steps_per_s"]:.2f} | '
        f'{row["sgd_steps_per_s"]:.0f} | {row["sgd_steps_per_s"] / local["sgd_steps_per_s"]:.2f}'
        f' | {row["wall_s"]:.0f} |')
  overhead = acting['acting_us'] - acting['raw_us']
  lines += [
      '',
      f'One actor step (policy inference + n-step adder with Reverb insert + env.step): '
      f'{acting["acting_us"]:.0f} µs, against {acting["raw_us"]:.0f} µs for a raw `env.step`: '
      f'acting adds {overhead:.0f} µs, {overhead / acting["raw_us"]:.1f}× the raw step.',
      END_MARK,
  ]
  return '\n'.join(lines) + '\n'


def write_section(path: str, section: str) -> None:
  """Replaces this benchmark's section of `path` (or appends it), leaving the rest alone."""
  text = open(path).read() if os.path.exists(path) else '# Benchmarks\n\n'
  if START_MARK in text and END_MARK in text:
    before, rest = text.split(START_MARK, 1)
    text = before + section + rest.split(END_MARK, 1)[1].lstrip('\n')
  else:
    text = text.rstrip('\n') + '\n\n' + section
  with open(path, 'w') as f:
    f.write(text)


def main(argv):
  del argv
  start_load = load()
  acting = acting_cost()
  print(f'acting: {acting}', flush=True)
  rows = throughput_rows()
  section = markdown(rows, acting, machine(), (start_load, load()))
  print(section)
  write_section(os.path.join(REPO, _OUT.value), section)


if __name__ == '__main__':
  app.run(main)
