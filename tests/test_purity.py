"""The floors of the layout (WORKSPACE.md, "Layout") and what each may import.

  wpo_jax/      the pure core: no TensorFlow, Reverb, Acme, Ray, nor anything above it
  agents/       the Acme agent: may use the core, acme, reverb, dm_control; not runner/experiments/ray
  runner/       wiring and runners: may use agents and the core; not experiments; ray only in the
                Ray runner's modules, `ray._private` only in runner/ray_cluster.py
  experiments/  entry points and their flags: anything

Only the standard library and ast here: `make test-core-latest` runs this file without the agent's
stack. That no library module changes JAX or the environment when imported is checked in
tests/test_import_side_effects.py.
"""

import ast
import pathlib
import re
import subprocess
import sys

FORBIDDEN = ('tensorflow', 'reverb', 'acme', 'ray', 'launchpad', 'agents', 'experiments')
REPO = pathlib.Path(__file__).resolve().parents[1]
CORE = REPO / 'wpo_jax'
RAY_MODULES = ('runner/distributed.py', 'runner/ray_workers.py', 'runner/ray_cluster.py')
MAX_MODULE_LINES = 330  # ~300; agents/acme_compat.py, the dm-acme compatibility layer, excepted.


def _imports(path):
  """Every module name `path` imports (absolute; relative imports are not used here)."""
  names = []
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names += [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      names.append(node.module or '')
  return names


def _library_modules():
  return sorted(p for floor in ('wpo_jax', 'agents', 'runner') for p in (REPO / floor).rglob('*.py'))


def test_core_sources_import_nothing_forbidden():
  offenders = []
  for path in sorted(CORE.rglob('*.py')):
    offenders += [f'{path.name}: {n}' for n in _imports(path) if n.split('.')[0] in FORBIDDEN]
  assert not offenders, offenders


def test_importing_the_core_loads_no_forbidden_module():
  code = ('import sys, wpo_jax, wpo_jax.learning, wpo_jax.losses, wpo_jax.networks; '
          f'print(sorted({{m.split(".")[0] for m in sys.modules}} & {set(FORBIDDEN)!r}))')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          check=True)
  assert result.stdout.strip() == '[]', result.stdout


def test_each_floor_imports_only_what_it_may():
  offenders = []
  for path in _library_modules():
    relative = path.relative_to(REPO).as_posix()
    floor = relative.split('/')[0]
    forbidden = {'agents': ('runner', 'experiments', 'ray'), 'runner': ('experiments',),
                 'wpo_jax': FORBIDDEN}[floor]
    for name in _imports(path):
      top = name.split('.')[0]
      if top in forbidden:
        offenders.append(f'{relative}: {name}')
      if top == 'ray' and relative not in RAY_MODULES:
        offenders.append(f'{relative}: {name} (Ray belongs to {RAY_MODULES})')
      if name.startswith('ray._private') and relative != 'runner/ray_cluster.py':
        offenders.append(f'{relative}: {name} (only runner/ray_cluster.py)')
  assert not offenders, offenders


def test_no_module_is_over_the_size_limit():
  sizes = {p.relative_to(REPO).as_posix(): len(p.read_text().splitlines())
           for floor in ('wpo_jax', 'agents', 'runner', 'experiments')
           for p in (REPO / floor).rglob('*.py')}
  too_big = {name: n for name, n in sizes.items()
             if n > MAX_MODULE_LINES and name != 'agents/acme_compat.py'}
  assert not too_big, too_big


def test_console_scripts_name_the_entry_points_mains():
  """setup.py's console scripts (wpo-train, wpo-compare) are the mains `python -m` runs."""
  setup = (REPO / 'setup.py').read_text()
  scripts = dict(re.findall(r"'([a-z-]+) = (experiments\.[a-z_]+:main)'", setup))
  assert scripts == {'wpo-train': 'experiments.run_wpo:main',
                     'wpo-compare': 'experiments.compare:main'}, scripts
  for target in scripts.values():
    module, function = target.split(':')
    tree = ast.parse((REPO / (module.replace('.', '/') + '.py')).read_text())
    assert function in [n.name for n in tree.body if isinstance(n, ast.FunctionDef)], target


def test_entry_points_do_their_set_up_in_main_not_at_import():
  """`experiments/run_wpo.py` and `compare.py` import nothing at module level: the re-exec,
  MUJOCO_GL and the patches happen in main(), before the heavy modules are imported."""
  for name in ('run_wpo', 'compare'):
    tree = ast.parse((REPO / 'experiments' / f'{name}.py').read_text())
    assert not [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], name
