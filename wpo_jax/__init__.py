"""wpo_jax: Wasserstein Policy Optimization in pure JAX/Flax.

Imports no TensorFlow, Reverb, Acme or Ray; the Acme agent lives in `agents/`.
"""

from wpo_jax import distributions
from wpo_jax import learning
from wpo_jax import losses
from wpo_jax import networks

__version__ = '0.1.0'
