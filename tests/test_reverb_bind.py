"""agents.reverb_bind: a real Reverb server confined to one address by the preloaded wrapper."""

import os
import socket
import subprocess
import sys

import pytest

from agents import reverb_bind

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Starts a Reverb server through start_server, inserts one item over gRPC, prints what listens.
_SERVER_SCRIPT = """
import sys
from agents import reverb_bind
reverb_bind.ensure_preloaded()
import reverb
address = sys.argv[1]
server = reverb_bind.start_server([reverb.Table.queue('queue', 10)], address)
host = f'[{address}]' if ':' in address else address
client = reverb.Client(f'{host}:{server.port}')
client.insert([1.0], {'queue': 1.0})
print('preloaded', reverb_bind.is_preloaded())
print('listening', ','.join(sorted(reverb_bind.listening_addresses(server.port))))
print('items', client.server_info()['queue'].current_size)
server.stop()
"""


def _serve(address, environment=None):
  result = subprocess.run([sys.executable, '-c', _SERVER_SCRIPT, address], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env=environment or dict(os.environ))
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  lines = dict(line.split(' ', 1) for line in result.stdout.splitlines() if ' ' in line)
  return lines, result.stderr


def test_listening_addresses_reads_the_kernel_socket_table():
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as ipv4, \
       socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as ipv6:
    ipv4.bind(('127.0.0.1', 0))
    ipv4.listen()
    port = ipv4.getsockname()[1]
    assert reverb_bind.listening_addresses(port) == {'127.0.0.1'}
    ipv6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    ipv6.bind(('::', port))
    ipv6.listen()
    assert reverb_bind.listening_addresses(port) == {'127.0.0.1', '::'}
  # Bound but not listening does not count.
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as idle:
    idle.bind(('127.0.0.1', 0))
    assert reverb_bind.listening_addresses(idle.getsockname()[1]) == set()


@pytest.mark.parametrize('address', ['127.0.0.1', '::1'])
def test_preloaded_server_listens_on_the_given_address_only(address):
  lines, _ = _serve(address)
  assert lines == {'preloaded': 'True', 'listening': address, 'items': '1'}


def test_without_the_wrapper_reverb_listens_everywhere_and_says_so():
  # As in a process that was not started through a launcher: nothing preloaded.
  environment = {k: v for k, v in os.environ.items() if k != 'LD_PRELOAD'}
  environment['WPO_REVERB_BIND_REEXECUTED'] = '1'  # ensure_preloaded does nothing.
  lines, stderr = _serve('127.0.0.1', environment)
  assert lines['preloaded'] == 'False' and lines['listening'] == '::'
  assert 'Reverb listens on every interface' in stderr


def test_the_wrapper_leaves_other_binds_alone():
  # Preloaded, with the variables set for another port: a wildcard bind here stays a wildcard.
  script = ('import os, socket, sys; from agents import reverb_bind; '
            'reverb_bind.ensure_preloaded(); '
            'os.environ["WPO_REVERB_BIND_ADDRESS"] = "127.0.0.1"; '
            'os.environ["WPO_REVERB_BIND_PORT"] = "1"; '
            's = socket.socket(socket.AF_INET6); s.bind(("::", 0)); s.listen(); '
            'print(reverb_bind.is_preloaded(), '
            'sorted(reverb_bind.listening_addresses(s.getsockname()[1])))')
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
  assert result.stdout.split('\n')[-2] == "True ['::']", result.stdout + result.stderr
