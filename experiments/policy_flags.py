"""--policy and --num_components: the policy-head flags that every launcher shares."""

import dataclasses
from typing import Any, Dict

from absl import flags

from agents import wpo
from wpo_jax import networks

POLICY = flags.DEFINE_enum(
    'policy', None, networks.POLICIES, 'WPO\'s policy head (WPOConfig.policy); unset: the '
    'preset\'s, gaussian. In experiments.compare, MPO stays Gaussian (its loss needs one).')
NUM_COMPONENTS = flags.DEFINE_integer(
    'num_components', None, 'With --policy=mixture: its number of Gaussians, K (default 2).')


def given() -> Dict[str, Any]:
  """The WPOConfig fields these flags set on the command line ({} when neither is given)."""
  return {flag.name: flag.value for flag in (POLICY, NUM_COMPONENTS) if flag.present}


def apply(config: wpo.WPOConfig) -> wpo.WPOConfig:
  """`config` with the given head flags in place.

  Raises:
    ValueError: a bad value (WPOConfig's check), or --num_components for a non-mixture policy.
  """
  config = dataclasses.replace(config, **given())
  if NUM_COMPONENTS.present and config.policy != 'mixture':
    raise ValueError(f'--num_components is for mixture policies: add --policy=mixture, or drop '
                     f'--num_components (the policy is {config.policy!r}).')
  return config
