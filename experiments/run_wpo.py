"""Train WPO on a Control Suite task: one process with an in-process Reverb server (the default).

  python -m experiments.run_wpo --env=cartpole:swingup --num_steps=100000 --workdir=/tmp/wpo

--policy=gaussian|mixture|tanh_gaussian (with --num_components for the mixture) picks the policy
head. With --distributed (and --num_actors, --ray_address, --reverb_port), the same run with replay,
learner, actors and evaluator as Ray processes: see runner/distributed.py.

Writes under --workdir: Acme CSV logs (logs/<label>/logs.csv for actor, learner, evaluator),
TensorBoard events (tensorboard/), learning_curve.png (refreshed at every evaluation),
evaluation.mp4 (at the end, where a headless renderer exists), run.json (the run's settings) and
checkpoints/ (learner state, counts, replay). Re-running with the same --workdir resumes.
"""


def main() -> None:
  """`python -m experiments.run_wpo` and the console script `wpo-train`."""
  # pylint: disable=g-import-not-at-top
  from agents import reverb_bind
  # First: it re-executes this command once with the wrapper that confines Reverb to one address.
  reverb_bind.ensure_preloaded()
  from runner import process
  process.prepare()  # MUJOCO_GL and dm-acme's patches, before dm_control and acme are imported.
  from absl import app
  from experiments import train_cli as cli
  app.run(cli.main)


if __name__ == '__main__':
  main()
