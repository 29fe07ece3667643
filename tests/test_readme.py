"""The README's code runs as written."""

import os
import re

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python_block_after(heading: str) -> str:
  with open(os.path.join(REPO, 'README.md')) as f:
    text = f.read()
  section = text[text.index(heading):]
  return re.search(r'```python\n(.*?)```', section, re.DOTALL).group(1)


def test_pure_core_snippet_takes_a_finite_step():
  namespace = {}
  exec(_python_block_after('### The pure core'), namespace)  # pylint: disable=exec-used
  assert bool(namespace['metrics']['finite'])
  assert int(namespace['state'].steps) == 1
  # The fused form it names takes the same step on a [1, B] batch.
  jax, learner, batch = namespace['jax'], namespace['learner'], namespace['batch']
  start = learner.init(jax.random.PRNGKey(0), observation_dim=24)
  fused_state, _ = namespace['fused'](start, jax.tree_util.tree_map(lambda x: x[None], batch))
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                         fused_state.params, namespace['state'].params)
