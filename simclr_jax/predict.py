r"""Class predictions of a trained classifier for new images.

  python -m simclr_jax.predict --workdir=W --images=PATH [--out=FILE.csv]
  # several processes (hosts, GPUs): as training, docs/launching.md
  ... [--coordinator_address=HOST:PORT --num_processes=N --process_id=I]

W is a fine-tuning or linear-evaluation workdir (one run of a study, e.g.
STUDY/simclr/finetune/frac_0.1/seed_0). PATH is one image, a folder (searched
recursively) or a text file of paths; images are prepared exactly as evaluation prepares
them. Writes, beside FILE.csv (default W/predict/predictions.csv):

- FILE.csv: one row per image, in order (a folder's files sorted): `path`, `predicted`, a
  probability column per class headed by the class name, `true` when PATH's sub-folders
  name the training classes, and `error` (empty, or why the file was not read);
- metrics.json: counts, and with the truth top1, balanced_accuracy, macro_f1,
  per_class_recall and confusion_matrix (computed as evaluation computes them); a
  metrics.json there that predict did not write is never overwritten;
- FILE.html: the images by predicted class, most confident first (evaluation/predictions_page.py).
"""

from simclr_jax.inference import predictions
from simclr_jax.runtime import console, distributed, installed, run_errors


def _main():
  from absl import app, flags  # pylint: disable=import-outside-toplevel
  workdir = flags.DEFINE_string('workdir', None, 'A fine-tuning or linear-evaluation workdir.')
  images = flags.DEFINE_string('images', None, 'An image, a folder, or a text file of paths.')
  out = flags.DEFINE_string('out', None,
                            f'The CSV to write (default: W/{predictions.DEFAULT_OUT}).')
  batch = flags.DEFINE_integer('batch_size', 0, 'Global batch (0: the run\'s eval_batch_size).')
  page = flags.DEFINE_bool('html', True, 'Also write the page of images (FILE.html).')
  cluster = distributed.define_flags()

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if not workdir.value or not images.value:
      raise app.UsageError('--workdir=DIR and --images=PATH are required')
    console.keep_quiet(verbose=False)  # before JAX starts its backends (and logs them)
    with run_errors.one_line_errors():
      distributed.initialize(cluster())  # before any other JAX call
      result = predictions.predict(workdir.value, images.value, out.value, batch.value,
                                   page.value)
    if distributed.is_main_process():
      print('\n'.join(predictions.summary_lines(result)))

  app.run(main, flags_parser=installed.parse_flags)


if __name__ == '__main__':
  _main()
