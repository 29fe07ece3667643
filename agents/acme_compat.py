"""Every compatibility patch that dm-acme 0.4.0 needs on this stack, in one place.

dm-acme 0.4.0 (2022) predates the pinned stack (Python 3.11, JAX 0.4.34, Reverb 0.14) and lists
dependencies that do not exist here (launchpad, sonnet, gym). Two calls, both idempotent:

  install_import_hook()  makes `import acme` work and changes nothing else (no JAX attribute, no
                         environment variable, no signal handler): `import agents` makes it, so
                         library modules import acme with no other side effect.
  apply()                everything: the hook plus the JAX aliases acme calls at run time. The
                         entry points (`runner.process.prepare`), Ray workers and tests' conftest
                         call it before running anything.

The patches:

  (JAX names below are gone from JAX 0.4.34, or deprecated and due to go.)
  jax.tree_multimap                              -> jax.tree_util.tree_map (SAC/TD3 learners).
  jax.tree_map, jax.tree_flatten (if missing)    -> jax.tree_util equivalents (~40 acme calls).
  jax.xla.Device, jax.xla.DeviceArray            -> jax.Device, jax.Array (acme.jax.utils,
                                                    variable_utils, impala: annotations evaluated
                                                    at import time, isinstance checks at run time).
  jax.pxla.ShardedDeviceArray                    -> jax.Array (acme.jax.utils.get_from_first_device).
  jnp.DeviceArray                                -> jax.Array (reverb adder utils, jax savers, dqn).
  acme.utils.signals imports launchpad           -> our SIGTERM-based `runtime_terminator`.
  acme.wrappers, acme.agents.jax.<agent> package
    __init__s eagerly import gym / launchpad / sonnet (GymWrapper, Distributed*/local layouts)
                                                 -> the same names, imported on first attribute use,
                                                    so e.g. `acme.agents.jax.sac.SACBuilder` and
                                                    `acme.jax.networks` (which pulls in
                                                    acme.wrappers) work without those packages.
  DeprecationWarnings for jax.tree_map/tree_flatten raised from acme's own call sites (JAX
    0.4.25+; fatal under -W error)              -> ignored for acme modules only.
  annotations in acme naming the JAX types above, evaluated at import time
                                                 -> postponed (acme modules are compiled as with
                                                    `from __future__ import annotations`), so
                                                    importing acme needs no JAX alias.
  ReverbAdder._writer passes get_signature_timeout_ms to Client.trajectory_writer, which Reverb
    0.14 no longer accepts                       -> the same writer, without that argument.

Import-time patches of acme itself go through one `sys.meta_path` finder (`_AcmeFinder`), so
`apply()` never imports acme, Reverb or TensorFlow; only the JAX attribute patches touch a
module directly. Every patch is guarded and does nothing where it is not needed.
"""

import __future__
import ast
import contextlib
import ctypes
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import signal
import sys
import threading
import time
import types
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional

_applied = False

# Packages whose __init__ we replace with lazy re-exports: acme.wrappers and every
# acme.agents.jax.<agent> (matched by prefix, one level deep).
_LAZY_PACKAGES = ('acme.wrappers',)
_LAZY_PACKAGE_PARENTS = ('acme.agents.jax',)
_SIGNALS = 'acme.utils.signals'


def install_import_hook() -> None:
  """Makes `import acme` work on this stack; touches nothing outside acme's own modules."""
  if not any(isinstance(f, _AcmeFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _AcmeFinder())
  _patch_already_imported()


def apply() -> None:
  """Installs all patches; idempotent, so every entry point may call it."""
  global _applied
  if _applied:
    return
  _patch_jax()
  install_import_hook()
  _applied = True


# ------------------------------------------------------------------------------------------------
# JAX: removed attributes that acme 0.4.0 reads.


def _jax_has(module: types.ModuleType, name: str) -> bool:
  """hasattr() without the DeprecationWarning that JAX's module __getattr__ emits."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return hasattr(module, name)


def _set_missing(module: types.ModuleType, name: str, value: Any) -> None:
  """Sets `module.name = value` only where the attribute is genuinely gone."""
  if not _jax_has(module, name):
    setattr(module, name, value)


def _patch_jax() -> None:
  """Restores the pre-0.4 JAX names acme uses, as aliases of their modern equivalents."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  array_type = getattr(jax, 'Array', None)
  device_type = getattr(jax, 'Device', None)
  # jax.tree_multimap was folded into tree_map (same signature: f, tree, *rest).
  _set_missing(jax, 'tree_multimap', jax.tree_util.tree_map)
  # Deprecated since JAX 0.4.25 and due for removal; acme calls them ~40 times.
  _set_missing(jax, 'tree_map', jax.tree_util.tree_map)
  _set_missing(jax, 'tree_flatten', jax.tree_util.tree_flatten)
  # jax.xla/jax.pxla were internal re-exports; acme only uses the types below.
  _set_missing(jax, 'xla', types.SimpleNamespace(Device=device_type, DeviceArray=array_type))
  _set_missing(jax, 'pxla', types.SimpleNamespace(ShardedDeviceArray=array_type))
  _set_missing(jnp, 'DeviceArray', array_type)
  # Until they are removed, jax.tree_map/tree_flatten warn at every call site in acme
  # (fatal under -W error). Silence exactly those, only where acme is the caller.
  warnings.filterwarnings('ignore', message=r'jax\.tree_(map|flatten) is deprecated',
                          category=DeprecationWarning, module=r'acme(\.|$)')


# ------------------------------------------------------------------------------------------------
# acme.utils.signals without launchpad.

_stop_lock = threading.RLock()  # Re-entrant: the SIGTERM handler runs on the main thread.
_stop_handlers: List[Callable[[], None]] = []
_previous_sigterm: Any = None
_sigterm_installed = False
_termination_watches: List[threading.Event] = []


@contextlib.contextmanager
def termination_watch() -> Iterator[threading.Event]:
  """An Event, set if a SIGTERM stops a runtime_terminator while the context is open.

  As under launchpad, such a SIGTERM makes e.g. `EnvironmentLoop.run()` return normally instead
  of killing the process: wrap the call in this to tell a stopped run from a finished one. A
  SIGTERM is seen only by the watches open when it arrives, so none outlives the call it stopped.
  """
  watch = threading.Event()
  with _stop_lock:
    _termination_watches.append(watch)
  try:
    yield watch
  finally:
    with _stop_lock:
      _termination_watches.remove(watch)


@contextlib.contextmanager
def runtime_terminator(callback: Optional[Callable[[], Any]] = None):
  """Replaces acme.utils.signals.runtime_terminator, which needed launchpad's stop handlers.

  Same contract: on SIGTERM, run `callback` (if any), then raise SystemExit in the thread that
  entered the context, and swallow that SystemExit at the context's exit, so e.g.
  `EnvironmentLoop.run()` simply returns. The process-wide SIGTERM handler can only be installed
  from the main thread; a context entered elsewhere before that is a plain no-op context.
  SIGINT is left alone so Ctrl-C still raises KeyboardInterrupt.
  """
  handler = _make_stop_handler(callback, threading.get_ident())
  _register_stop_handler(handler)
  try:
    yield
  except SystemExit:
    pass
  finally:
    _unregister_stop_handler(handler)


def _make_stop_handler(callback, thread_id: int) -> Callable[[], None]:
  """A handler that runs `callback` then raises SystemExit asynchronously in `thread_id`."""
  def stop():
    if callback:
      callback()
    res = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(SystemExit))
    assert res < 2, 'Stopping worker failed'
  return stop


def _register_stop_handler(handler: Callable[[], None]) -> None:
  with _stop_lock:
    _stop_handlers.append(handler)
    _maybe_install_sigterm()


def _unregister_stop_handler(handler: Callable[[], None]) -> None:
  """Removes `handler`; restores the previous SIGTERM handler once none is left."""
  global _sigterm_installed
  with _stop_lock:
    _stop_handlers.remove(handler)
    if (not _stop_handlers and _sigterm_installed and
        threading.current_thread() is threading.main_thread()):
      # None means the previous handler was not installed from Python: fall back to default.
      signal.signal(signal.SIGTERM,
                    signal.SIG_DFL if _previous_sigterm is None else _previous_sigterm)
      _sigterm_installed = False


def _maybe_install_sigterm() -> None:
  """Installs `_on_sigterm` (Python allows this from the main thread only)."""
  global _previous_sigterm, _sigterm_installed
  if _sigterm_installed or threading.current_thread() is not threading.main_thread():
    return
  _previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
  _sigterm_installed = True


def _on_sigterm(signum, frame) -> None:
  """Stops every active runtime_terminator, or defers to the previous handler if none is."""
  with _stop_lock:
    handlers, watches = list(_stop_handlers), list(_termination_watches)
  if handlers:
    for watch in watches:
      watch.set()
    for handler in handlers:
      handler()
  elif callable(_previous_sigterm):
    _previous_sigterm(signum, frame)
  elif _previous_sigterm != signal.SIG_IGN:
    # SIG_DFL (or unknown): terminate the way the default action would have.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)


class _SignalsLoader(importlib.abc.Loader):
  """Builds `acme.utils.signals` from this module instead of acme's launchpad-based file."""

  def create_module(self, spec):
    return None  # Default module creation.

  def exec_module(self, module: types.ModuleType) -> None:
    module.__doc__ = 'acme.utils.signals, reimplemented without launchpad by agents.acme_compat.'
    module.runtime_terminator = runtime_terminator


# ------------------------------------------------------------------------------------------------
# Lazy package __init__s: same exported names, each imported on first use.


def _exported_names(init_path: str, package: str) -> Dict[str, tuple]:
  """{name: (module, attribute)} for every `from X import Y [as Z]` in a package __init__."""
  with open(init_path, encoding='utf-8') as f:
    tree = ast.parse(f.read(), init_path)
  exports = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom):
      source = importlib.util.resolve_name('.' * node.level + (node.module or ''), package)
      for alias in node.names:
        exports[alias.asname or alias.name] = (source, alias.name)
  return exports


class _LazyPackageLoader(importlib.abc.Loader):
  """Executes a package __init__ as lazy re-exports instead of eager imports.

  `from acme.wrappers import GymWrapper` still raises the genuine ImportError (no gym), but only
  for that name; submodules (`acme.wrappers.observation_action_reward`) import as usual.
  """

  def __init__(self, init_path: str):
    self._init_path = init_path

  def create_module(self, spec):
    return None

  def exec_module(self, module: types.ModuleType) -> None:
    with open(self._init_path, encoding='utf-8') as f:
      module.__doc__ = ast.get_docstring(ast.parse(f.read()))
    exports = _exported_names(self._init_path, module.__name__)

    def __getattr__(name: str):  # pylint: disable=invalid-name
      if name not in exports:
        raise AttributeError(f'module {module.__name__!r} has no attribute {name!r}')
      source, attribute = exports[name]
      value = getattr(importlib.import_module(source), attribute)
      setattr(module, name, value)  # Cache: __getattr__ is only consulted for missing names.
      return value

    def __dir__():  # pylint: disable=invalid-name
      return sorted(set(module.__dict__) | set(exports))

    module.__getattr__ = __getattr__
    module.__dir__ = __dir__


# ------------------------------------------------------------------------------------------------
# Patches applied right after an acme module is imported.


def _patch_reverb_adder(base: types.ModuleType) -> None:
  """ReverbAdder._writer without `get_signature_timeout_ms`, which Reverb 0.14 dropped.

  Reverb 0.14's Client.trajectory_writer(num_keep_alive_refs, *, validate_items) fetches the
  table signature itself (blocking, no timeout), so the argument is simply not passed.
  """
  import reverb  # pylint: disable=g-import-not-at-top  (already imported by `base`)
  params = inspect.signature(reverb.Client.trajectory_writer).parameters
  if 'get_signature_timeout_ms' in params:
    return

  def _writer(self) -> reverb.TrajectoryWriter:
    # Name-mangled private attribute of ReverbAdder, as in acme's own property.
    if self._ReverbAdder__writer is None:  # pylint: disable=protected-access
      self._ReverbAdder__writer = self._client.trajectory_writer(  # pylint: disable=protected-access
          num_keep_alive_refs=self._max_sequence_length)
      self._writer_created_timestamp = time.time()
    return self._ReverbAdder__writer  # pylint: disable=protected-access

  base.ReverbAdder._writer = property(_writer)  # pylint: disable=protected-access


_POST_IMPORT_PATCHES = {
    'acme.adders.reverb.base': _patch_reverb_adder,
}


class _PatchingLoader(importlib.abc.Loader):
  """Wraps a module's real loader and runs a patch function right after the module executes."""

  def __init__(self, loader, patch: Callable[[types.ModuleType], None]):
    self._loader = loader
    self._patch = patch

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module: types.ModuleType) -> None:
    self._loader.exec_module(module)
    self._patch(module)

  def __getattr__(self, name: str):
    # get_source, get_filename, ... so tracebacks and inspect keep working.
    return getattr(self._loader, name)


class _PostponedAnnotationsLoader(importlib.machinery.SourceFileLoader):
  """Compiles an acme module as if it began with `from __future__ import annotations`.

  acme 0.4.0 annotates with JAX types that JAX 0.4.34 no longer has (`jax.xla.DeviceArray`, ...);
  postponed, those annotations stay strings and importing acme needs no alias in JAX. The cached
  bytecode (compiled without the flag) is bypassed.
  """

  def get_code(self, fullname):
    return compile(self.get_source(fullname), self.get_filename(fullname), 'exec',
                   flags=__future__.annotations.compiler_flag, dont_inherit=True)


# ------------------------------------------------------------------------------------------------
# The import hook.


def _missing(package: str) -> bool:
  return importlib.util.find_spec(package) is None


def _is_lazy_package(fullname: str) -> bool:
  if fullname in _LAZY_PACKAGES:
    return True
  parent, _, child = fullname.rpartition('.')
  return parent in _LAZY_PACKAGE_PARENTS and bool(child)


class _AcmeFinder(importlib.abc.MetaPathFinder):
  """Redirects the few acme modules above; every other import is left to the normal finders."""

  def __init__(self):
    self._replace_signals = _missing('launchpad')

  def find_spec(self, fullname: str, path, target=None):
    if fullname != 'acme' and not fullname.startswith('acme.'):
      return None
    if fullname == _SIGNALS and self._replace_signals:
      return importlib.machinery.ModuleSpec(fullname, _SignalsLoader(), origin=__file__)
    spec = importlib.machinery.PathFinder.find_spec(fullname, path)
    if spec is None:
      return None
    if _is_lazy_package(fullname) and spec.submodule_search_locations is not None:
      spec.loader = _LazyPackageLoader(spec.origin)
      return spec
    if isinstance(spec.loader, importlib.machinery.SourceFileLoader):
      spec.loader = _PostponedAnnotationsLoader(fullname, spec.origin)
    if fullname in _POST_IMPORT_PATCHES:
      spec.loader = _PatchingLoader(spec.loader, _POST_IMPORT_PATCHES[fullname])
    return spec


def _patch_already_imported() -> None:
  """Applies post-import patches to acme modules that were imported before `apply()`."""
  for name, patch in _POST_IMPORT_PATCHES.items():
    if name in sys.modules:
      patch(sys.modules[name])
