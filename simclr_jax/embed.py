r"""The encoder's features for new images, for clustering, retrieval or another classifier.

  python -m simclr_jax.embed --workdir=W --images=PATH --out=FILE.npz [--z] [--dtype=float16]
  # several processes (hosts, GPUs): as training, docs/launching.md
  ... [--coordinator_address=HOST:PORT --num_processes=N --process_id=I]

W is any workdir with an encoder: a pretraining (its last checkpoint), a fine-tuning or a
linear evaluation (its classifier's encoder). PATH is as for predict. FILE.npz holds

- `h` [n, F]: the encoder's pooled features, computed as linear evaluation computes them
  (float32 unless --dtype says otherwise);
- `z` [n, D] with --z: the projection head's output (pretraining workdirs, and linear
  evaluations of g(h));
- `paths` [n]: the embedded files, in the order of the rows;
- `labels` [n] and `class_names`, when PATH's sub-folders name classes (the training
  classes of a classifier workdir; for a pretraining, the sub-folders' own names);
- `failed_paths`, `failed_errors`: the files not embedded and why;
- `encoder_config`: the run's model and data settings, as a JSON string.
"""

from simclr_jax.inference import embeddings
from simclr_jax.runtime import console, distributed, installed, run_errors


def _main():
  from absl import app, flags  # pylint: disable=import-outside-toplevel
  workdir = flags.DEFINE_string('workdir', None, 'Any workdir with an encoder.')
  images = flags.DEFINE_string('images', None, 'An image, a folder, or a text file of paths.')
  out = flags.DEFINE_string('out', None, 'The .npz file to write.')
  with_z = flags.DEFINE_bool('z', False, 'Also the projection head\'s output z.')
  dtype = flags.DEFINE_string('dtype', 'float32', f'One of {embeddings.DTYPES}.')
  batch = flags.DEFINE_integer('batch_size', 0, 'Global batch (0: the run\'s eval_batch_size).')
  cluster = distributed.define_flags()

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if not workdir.value or not images.value or not out.value:
      raise app.UsageError('--workdir=DIR, --images=PATH and --out=FILE.npz are required')
    console.keep_quiet(verbose=False)  # before JAX starts its backends (and logs them)
    with run_errors.one_line_errors():
      distributed.initialize(cluster())  # before any other JAX call
      arrays = embeddings.embed(workdir.value, images.value, out.value, with_z.value,
                                dtype.value, batch.value)
    if distributed.is_main_process():
      print(f"embedded {len(arrays['paths'])} images, {len(arrays['failed_paths'])} could "
            f"not be read (failed_paths, failed_errors) -> {out.value}")

  app.run(main, flags_parser=installed.parse_flags)


if __name__ == '__main__':
  _main()
