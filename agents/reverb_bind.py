"""Reverb servers that listen on one address only.

`reverb.Server` (dm-reverb 0.14) has no bind-address option: its gRPC server listens on
[::]:port, every interface of the machine. `reverb_bind.c`, preloaded into the server's process,
wraps libc's bind() and moves that one wildcard bind to the address we choose; every other bind
is untouched. The dynamic loader honours LD_PRELOAD only when a program starts, so:

  * a launcher calls `ensure_preloaded()` first thing (it re-executes the program once with the
    library preloaded);
  * a process that others start (a Ray worker) gets `preload_environment()` in its environment;
  * the process then starts its server with `start_server(tables, address)`, which checks the
    kernel's socket table afterwards: the server listens on `address` only, or start_server
    fails. Where the library cannot be built (no C compiler) or was not preloaded, the server
    listens on every interface, with a warning that says how to fix it.

The library is compiled on first use into ~/.cache/wpo_jax (or $XDG_CACHE_HOME/wpo_jax), under a
name that hashes its source, with the system C compiler.
"""

import hashlib
import ipaddress
import os
import shutil
import subprocess
import sys
from typing import Any, Dict, Optional, Sequence, Set

from absl import logging

from agents import atomic_files

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'reverb_bind.c')
_LIBRARY_PREFIX = 'wpo_reverb_bind-'
ADDRESS_VARIABLE = 'WPO_REVERB_BIND_ADDRESS'
PORT_VARIABLE = 'WPO_REVERB_BIND_PORT'
# Set in a re-executed program, so that a failed preload is not retried forever.
_REEXECUTED_VARIABLE = 'WPO_REVERB_BIND_REEXECUTED'
_LISTEN_STATE = '0A'  # TCP_LISTEN in /proc/net/tcp{,6}.


def library_path() -> Optional[str]:
  """The compiled wrapper library, built if needed; None when no C compiler is available."""
  with open(_SOURCE, 'rb') as f:
    source = f.read()
  cache = os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),
                       'wpo_jax')
  path = os.path.join(cache, f'{_LIBRARY_PREFIX}{hashlib.sha256(source).hexdigest()[:16]}.so')
  if os.path.exists(path):
    return path
  compiler = os.environ.get('CC') or shutil.which('cc') or shutil.which('gcc')
  if compiler is None:
    return None
  # Built beside its final name and renamed: concurrent builders never see a partial file.
  try:
    with atomic_files.atomic_output(path) as partial:
      subprocess.run([compiler, '-shared', '-fPIC', '-O2', '-o', partial, _SOURCE, '-ldl'],
                     check=True, capture_output=True, text=True)
  except (OSError, subprocess.CalledProcessError) as error:
    logging.warning('Could not build %s: %s', _SOURCE, getattr(error, 'stderr', error))
    return None
  return path


def is_preloaded() -> bool:
  """Whether the wrapper library is mapped into this process."""
  with open('/proc/self/maps') as f:
    return _LIBRARY_PREFIX in f.read()


def preload_environment() -> Dict[str, str]:
  """Environment variables that preload the wrapper into a new process ({} if unavailable)."""
  library = library_path()
  if library is None:
    return {}
  preload = [library] + [p for p in os.environ.get('LD_PRELOAD', '').split() if p != library]
  return {'LD_PRELOAD': ' '.join(preload)}


def ensure_preloaded(argv: Optional[Sequence[str]] = None) -> None:
  """Re-executes this program with the wrapper preloaded, unless it already is (or cannot be).

  Call it before anything else in a launcher's `__main__`: the process image is replaced, so
  whatever ran before runs again. `argv` defaults to the original command line.
  """
  if is_preloaded() or os.environ.get(_REEXECUTED_VARIABLE):
    return
  environment = preload_environment()
  if not environment:
    return
  environment = dict(os.environ, **environment, **{_REEXECUTED_VARIABLE: '1'})
  argv = list(argv or sys.orig_argv)
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, argv, environment)


def listening_addresses(port: int) -> Set[str]:
  """Addresses with a TCP socket listening on `port`, from the kernel's tables (Linux).

  IPv4-mapped IPv6 addresses are given as IPv4; the wildcards are '0.0.0.0' and '::'.
  """
  found = set()
  for table, width in (('/proc/net/tcp', 8), ('/proc/net/tcp6', 32)):
    if not os.path.exists(table):
      continue
    with open(table) as f:
      next(f)
      for line in f:
        fields = line.split()
        local, state = fields[1], fields[3]
        address_hex, port_hex = local.split(':')
        if state != _LISTEN_STATE or int(port_hex, 16) != port or len(address_hex) != width:
          continue
        # The kernel prints each 32-bit word of the address in host (little-endian) order.
        packed = b''.join(bytes.fromhex(address_hex[i:i + 8])[::-1]
                          for i in range(0, width, 8))
        address = ipaddress.ip_address(packed)
        mapped = getattr(address, 'ipv4_mapped', None)
        found.add(str(mapped or address))
  return found


def start_server(tables: Sequence[Any], address: str, port: Optional[int] = None,
                 checkpointer: Any = None):
  """A `reverb.Server` listening on address:port only (port None: a free one).

  Raises:
    RuntimeError: the wrapper is preloaded but the server listens elsewhere too.
  """
  import portpicker  # pylint: disable=g-import-not-at-top
  import reverb  # pylint: disable=g-import-not-at-top  (keeps ensure_preloaded's import light)
  port = port or portpicker.pick_unused_port()
  os.environ[ADDRESS_VARIABLE] = address
  os.environ[PORT_VARIABLE] = str(port)
  try:
    server = reverb.Server(tables, port=port, checkpointer=checkpointer)
  finally:
    del os.environ[ADDRESS_VARIABLE], os.environ[PORT_VARIABLE]
  listening = listening_addresses(port)
  if not is_preloaded():
    logging.warning(
        'Reverb listens on every interface (%s) at port %d: agents/reverb_bind.c is not '
        'preloaded. Install a C compiler (cc) and start through a launcher, or firewall the '
        'port.', ', '.join(sorted(listening)), port)
  elif listening != {str(ipaddress.ip_address(address))}:
    server.stop()
    raise RuntimeError(f'Reverb was to listen on {address}:{port} only, but listens on '
                       f'{sorted(listening)}.')
  return server
