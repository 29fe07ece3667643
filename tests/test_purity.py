"""wpo_jax is the pure core: it must not pull in TensorFlow, Reverb, Acme or Ray."""

import ast
import pathlib
import subprocess
import sys

FORBIDDEN = ('tensorflow', 'reverb', 'acme', 'ray', 'launchpad', 'agents', 'experiments')
CORE = pathlib.Path(__file__).resolve().parents[1] / 'wpo_jax'


def test_core_sources_import_nothing_forbidden():
  offenders = []
  for path in sorted(CORE.rglob('*.py')):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        names = [node.module or '']
      else:
        continue
      offenders += [f'{path.name}: {n}' for n in names if n.split('.')[0] in FORBIDDEN]
  assert not offenders, offenders


def test_importing_the_core_loads_no_forbidden_module():
  code = ('import sys, wpo_jax, wpo_jax.learning, wpo_jax.losses, wpo_jax.networks; '
          f'print(sorted({{m.split(".")[0] for m in sys.modules}} & {set(FORBIDDEN)!r}))')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          check=True)
  assert result.stdout.strip() == '[]', result.stdout
