r"""Pretrain an encoder with SimCLR.

  python -m simclr_jax.pretrain --config=configs/demo.py --workdir=workdirs/demo \
      [--config.KEY=VALUE ...]
"""

import os

from simclr_jax.runtime import cli, console


def pretrain_and_summarize(config, workdir: str) -> dict:
  # Imported here: a mistyped flag is reported before TensorFlow and the trainer load.
  from simclr_jax.training import loop  # pylint: disable=import-outside-toplevel
  results = loop.train_and_evaluate(config, workdir)
  lines = [f"pretraining {results['status']} at step {results['step']}"]
  if 'probe_acc' in results:
    lines.append(f"online probe accuracy (last training batch): {results['probe_acc']:.3f}")
  if 'probe_test_top1' in results:
    lines.append('linear probe on frozen features, test split: '
                 f"SimCLR encoder {results['probe_test_top1']:.3f}, "
                 f"randomly initialised encoder {results['random_encoder_probe_test_top1']:.3f}")
    lines.append(f"kNN top-1 (k={config.knn_k}), test split: {results['knn_top1']:.3f}")
  lines.append(f"results: {os.path.join(workdir, 'metrics.json')}")
  console.say('\n'.join(lines))
  return results


if __name__ == '__main__':
  cli.run(pretrain_and_summarize)
