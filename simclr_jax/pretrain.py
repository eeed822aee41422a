r"""Pretrain an encoder with SimCLR.

  python -m simclr_jax.pretrain --config=configs/demo.py --workdir=workdirs/demo \
      [--config.KEY=VALUE ...]
"""

from simclr_jax import cli, train

if __name__ == '__main__':
  cli.run(train.train_and_evaluate)
