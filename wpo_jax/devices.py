"""Which device the learner runs on, as one line for launch output and run records."""

import importlib.util

import jax


def learner_device() -> str:
  """'cpu', or the accelerator's name (e.g. 'NVIDIA H100 80GB HBM3'), of jax's default device.

  The learner's jitted step runs on `jax.devices()[0]`: the first GPU when the CUDA plugin found
  one, else the CPU (with JAX_PLATFORMS=cpu, always the CPU).
  """
  device = jax.devices()[0]
  return 'cpu' if device.platform == 'cpu' else str(device.device_kind)


def _cuda_plugin_installed() -> bool:
  try:
    return importlib.util.find_spec('jax_plugins.xla_cuda12') is not None
  except ModuleNotFoundError:  # No plugin package at all.
    return False


def _main() -> None:
  """`python -m wpo_jax.devices`: the learner's device, and why it is the CPU where it is."""
  device = learner_device()
  note = ''
  if device == 'cpu' and _cuda_plugin_installed():
    note = ('; the CUDA plugin is installed but JAX found no NVIDIA GPU (or JAX_PLATFORMS=cpu), '
            'so the learner runs on the CPU')
  print(f'learner device: {device} (jax {jax.__version__}, {jax.devices()}{note})')


if __name__ == '__main__':
  _main()
