"""A short WPO learner demo on a one-state bandit with reward −½‖a − a*‖² (no environment needed).

  python -m experiments.demo_learner
"""

from absl import app
import jax
import jax.numpy as jnp

from wpo_jax import learning
from wpo_jax import networks

OPTIMUM = jnp.array([0.5, -0.3, 0.8])


def _batches(key, num_steps, batch_size=64):
  # Behaviour actions cover a wider box than the policy visits, so the critic is fitted where
  # the policy samples.
  actions = jax.random.uniform(key, (num_steps, batch_size, OPTIMUM.shape[0]), minval=-2.0,
                               maxval=2.0)
  observation = jnp.ones((num_steps, batch_size, 1))
  return learning.Transition(observation, actions,
                             -0.5 * jnp.sum(jnp.square(actions - OPTIMUM), axis=-1),
                             jnp.zeros((num_steps, batch_size)), observation)


def main(argv):
  del argv
  action_dim = OPTIMUM.shape[0]
  nets = networks.make_networks(action_dim, (64, 64), (64, 64))
  config = learning.LearnerConfig(num_action_samples=8, learning_rate=1e-3,
                                  clip_critic_actions=False, kl_weight_stddev=1.0)
  learner = learning.make_learner(nets, action_dim, config)
  state = learner.init(jax.random.PRNGKey(0), 1)
  fused = jax.jit(learning.fuse_sgd_steps(learner.sgd_step))
  key = jax.random.PRNGKey(1)
  print(f'target action a* = {OPTIMUM}')
  for _ in range(8):
    key, batch_key = jax.random.split(key)
    state, metrics = fused(state, _batches(batch_key, 250))
    policy = nets.policy.apply(state.params.policy, jnp.ones((1, 1)))
    mean = ' '.join(f'{x:+.3f}' for x in policy.mean[0].tolist())
    stddev = ' '.join(f'{x:.3f}' for x in policy.stddev[0].tolist())
    print(f'step {int(state.steps):5d}  mean [{mean}]  σ [{stddev}]  '
          f'critic loss {float(metrics["critic_loss"][-1]):.5f}')


if __name__ == '__main__':
  app.run(main)
