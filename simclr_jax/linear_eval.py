r"""Linear evaluation: a linear classifier on the frozen encoder's features h.

  python -m simclr_jax.linear_eval --config=configs/demo.py --workdir=workdirs/demo_linear \
      --config.init_from=workdirs/demo [--config.label_fraction=0.1]

See simclr_jax/evaluation/linear.py for the optimizer and how the L2 strength is chosen.
"""

from simclr_jax.evaluation import linear
from simclr_jax.runtime import cli, console


def evaluate_and_summarize(config, workdir: str) -> dict:
  result = linear.run_linear_eval(config, workdir)
  console.say(console.evaluation_summary(result, workdir))
  return result


if __name__ == '__main__':
  cli.run(evaluate_and_summarize)
