"""wpo_jax: Wasserstein Policy Optimization in JAX/Flax, as an Acme agent.

The core (`wpo_jax`) needs only JAX, Flax, Optax and chex. The Acme agent, launchers and
baselines need the extras; `make setup` installs the exact pinned set from requirements.lock and
dm-acme==0.4.0 with --no-deps (its dm-launchpad pin has no Python 3.11 wheel).
"""

import setuptools

core = [
    'jax>=0.4.34',
    'flax>=0.10.4',
    'optax>=0.2.5',
    'chex>=0.1.90',
    'numpy>=1.26.4',
]
agent = [
    # dm-reverb 0.14 is built against TensorFlow 2.15, which fixes numpy < 2 and jax <= 0.4.34.
    'dm-reverb==0.14.0',
    'tensorflow-cpu>=2.15.1,<2.16',
    'dm-control>=1.0.50,<1.1',
    'mujoco>=3.17.0,<4',  # MuJoCo 4 breaks dm-control 1.0.50.
    'dm-env>=1.6',
    'dm-tree>=0.1.8',
    'absl-py>=2.0',
    'orbax-checkpoint>=0.11.5',
    'matplotlib>=3.8',
    'tqdm>=4.66',
    'imageio>=2.34',
    'imageio-ffmpeg>=0.5',
]
baselines = [
    # Acme 0.4.0's JAX SAC/TD3/D4PG.
    'dm-haiku==0.0.13',
    'rlax==0.1.7',
    'tensorflow-probability==0.23.0',
]

setuptools.setup(
    name='wpo_jax',
    version='0.1.0',
    description='Wasserstein Policy Optimization in JAX/Flax, as an Acme agent',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=setuptools.find_packages(include=['wpo_jax', 'wpo_jax.*', 'agents', 'agents.*',
                                                'runner', 'runner.*', 'experiments',
                                                'experiments.*']),
    package_data={'agents': ['reverb_bind.c']},
    # The same mains as `python -m experiments.run_wpo` and `python -m experiments.compare`.
    entry_points={'console_scripts': [
        'wpo-train = experiments.run_wpo:main',
        'wpo-compare = experiments.compare:main',
    ]},
    python_requires='>=3.10',
    install_requires=core,
    extras_require={
        'agent': agent,
        'baselines': baselines,
        'distributed': ['ray[default]>=2.40'],
        'dev': ['pytest>=8'],
        'all': agent + baselines + ['ray[default]>=2.40', 'pytest>=8'],
    },
)
