"""Feeding a jitted learner step: batches put on the device ahead of their use."""

import collections
from typing import Any, Iterator, Optional

import jax


def device_prefetch(iterator: Iterator[Any], ahead: int = 1,
                    device: Optional[jax.Device] = None) -> Iterator[Any]:
  """Yields `iterator`'s pytrees as arrays on `device`, `ahead` more already on their way.

  `jax.device_put` returns at once and copies in the background, so with `ahead=1` (double
  buffering) batch i+1 is being transferred while the step on batch i runs, and the step never
  waits for a host-to-device copy. Items are pulled from `iterator` `ahead` early.

  Args:
    iterator: pytrees of host (numpy) arrays, e.g. [k, B, ...] batches for k fused steps.
    ahead: how many items beyond the one handed out sit on the device; >= 0.
    device: where to put them; JAX's default device (the learner's) if None.
  """
  if ahead < 0:
    raise ValueError(f'device_prefetch(ahead={ahead}): ahead must be >= 0.')
  queue = collections.deque()
  for item in iterator:
    queue.append(jax.device_put(item, device))
    if len(queue) > ahead:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
