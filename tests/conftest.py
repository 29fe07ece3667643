"""The explicit process set-up every entry point makes (MUJOCO_GL, dm-acme patches), for tests.

Not where acme is absent (`make test-core-latest`: the core alone, on the newest JAX): there the
JAX aliases are not needed, and the core must pass without them.
"""

import importlib.util
import sys

import pytest

if importlib.util.find_spec('acme') is not None:
  from runner import process  # pylint: disable=g-import-not-at-top
  process.prepare()


@pytest.fixture(autouse=True)
def _forget_sigterms_sent_by_the_test():
  """A test that sends itself SIGTERM leaves acme_compat's process-wide "termination requested"
  set; the next test to run an Acme loop or an evaluation would stop at once without this."""
  yield
  compat = sys.modules.get('agents.acme_compat')
  if compat is not None:
    compat.clear_termination_request()
