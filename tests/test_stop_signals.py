"""How a run stops: `runner.wiring.final_checkpoint` on Ctrl-C, SIGTERM and errors, with real signals."""

import os
import signal
import time

import pytest

from agents import acme_compat
from runner import wiring
from test_run_wpo import sigint_as_under_a_terminal


class _Run:
  """The checkpoint and progress callbacks final_checkpoint is given, recording their calls."""

  def __init__(self):
    self.checkpoints = []
    self.closed = 0

  def checkpoint(self, interrupted):
    self.checkpoints.append(interrupted)
    return f'ckpt-{len(self.checkpoints)}'

  def close(self):
    self.closed += 1


def _wait_for_signal():
  for _ in range(500):  # The handler's exception lands in one of these sleeps.
    time.sleep(0.01)
  pytest.fail('the signal did not stop the loop within 5 s')


def test_sigterm_outside_acme_loops_checkpoints_then_raises_terminated(capsys):
  run = _Run()
  before = signal.getsignal(signal.SIGTERM)
  with pytest.raises(wiring.Terminated) as stop:
    with wiring.final_checkpoint(run.checkpoint, run):
      assert signal.getsignal(signal.SIGTERM) is not before
      os.kill(os.getpid(), signal.SIGTERM)
      _wait_for_signal()
  assert isinstance(stop.value, KeyboardInterrupt)  # Every caller's Ctrl-C path handles it.
  assert run.checkpoints == [True] and run.closed == 1
  assert signal.getsignal(signal.SIGTERM) == before
  # The stop names the checkpoint it wrote: the launchers' own line cannot know whether one was.
  assert capsys.readouterr().out == 'Checkpoint written: ckpt-1\n'


class _Loop:
  """An Acme EnvironmentLoop's `run` as far as signals go: inside runtime_terminator, which takes
  a SIGTERM and returns early; `sigterm` sends itself one first."""

  def __init__(self, sigterm: bool):
    self.sigterm, self.runs = sigterm, []

  def run(self, **kwargs):
    with acme_compat.runtime_terminator():
      self.runs.append(kwargs)
      if self.sigterm:
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_for_signal()


def test_sigterm_inside_an_acme_loop_is_raised_when_the_loop_returns():
  run = _Run()
  loop = _Loop(sigterm=True)
  with pytest.raises(wiring.Terminated):
    with wiring.final_checkpoint(run.checkpoint, run):
      wiring.run_loop(loop, num_steps=7)
      pytest.fail('run_loop let the run continue past a SIGTERM')
  assert loop.runs == [{'num_steps': 7}] and run.checkpoints == [True]


def test_ctrl_c_checkpoints_and_an_earlier_sigterm_does_not_stop_a_new_run():
  run = _Run()
  with sigint_as_under_a_terminal(), pytest.raises(KeyboardInterrupt) as stop:
    with wiring.final_checkpoint(run.checkpoint, run):
      os.kill(os.getpid(), signal.SIGINT)
      _wait_for_signal()
  assert not isinstance(stop.value, wiring.Terminated)
  assert run.checkpoints == [True]

  _Loop(sigterm=True).run()  # A SIGTERM that stopped an Acme loop outside any run_loop.
  later, loop = _Run(), _Loop(sigterm=False)
  with wiring.final_checkpoint(later.checkpoint, later):
    wiring.run_loop(loop, num_episodes=2)
  assert loop.runs == [{'num_episodes': 2}]
  assert later.checkpoints == [False] and later.closed == 1


def test_an_error_writes_no_checkpoint_so_the_last_good_one_stays(capsys):
  run = _Run()
  with pytest.raises(FloatingPointError):
    with wiring.final_checkpoint(run.checkpoint, run):
      raise FloatingPointError('non-finite loss')
  assert run.checkpoints == [] and run.closed == 1
  assert 'Checkpoint written' not in capsys.readouterr().out
