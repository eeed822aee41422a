r"""Fine-tune a pretrained encoder on a fraction of the labels (or, with
--config.supervised_control=True, train the same network from random init).

  python -m simclr_jax.finetune --config=configs/demo.py --workdir=workdirs/demo_ft10 \
      --config.init_from=workdirs/demo --config.label_fraction=0.1

See simclr_jax/evaluation/fine_tuning.py for the recipe and model choice.
"""

from simclr_jax.evaluation import fine_tuning
from simclr_jax.runtime import cli, console


def finetune_and_summarize(config, workdir: str) -> dict:
  result = fine_tuning.run_finetune(config, workdir)
  console.say(console.evaluation_summary(result, workdir))
  return result


if __name__ == '__main__':
  cli.run(finetune_and_summarize)
