r"""A trained model as plain files any user can load: the encoder, or a whole classifier.

WORKDIR/encoder/ holds `variables.npz` (every parameter and batch-norm statistic, keyed
by its path, e.g. `params/stages/0/0/conv1/conv/kernel`) and `config.json` (the model
settings). Loading needs this package only, no checkpoint tooling:

  from simclr_jax.export import load_encoder
  encoder = load_encoder('WORKDIR/encoder')
  h = encoder(images, train=False)  # images: float [B, S, S, C] in [0, 1]

Other frameworks (`config.export.formats` at the end of pretraining, or afterwards):

  python -m simclr_jax.export --workdir=WORKDIR --format=torchvision

writes WORKDIR/encoder_torchvision.safetensors, a torchvision ResNet state dict without
`fc` (models/torchvision_export.py says what is supported). On a fine-tuning or
linear-evaluation workdir it writes WORKDIR/classifier_torchvision.safetensors, with `fc`
(when the classifier reads h), and

  python -m simclr_jax.export --workdir=WORKDIR --format=onnx [--layout=nchw]

writes WORKDIR/model.onnx, the encoder and the classifier together
(models/onnx_export.py documents its input).
"""

import os

from simclr_jax.inference import model_export
from simclr_jax.models import encoder_export, onnx_export
from simclr_jax.models.encoder_export import load_encoder  # noqa: F401 (the documented import)
from simclr_jax.runtime import console, installed, run_errors


def _main():
  from absl import app, flags  # pylint: disable=import-outside-toplevel
  workdir = flags.DEFINE_string('workdir', None, 'A pretraining, fine-tuning or '
                                'linear-evaluation workdir.')
  formats = flags.DEFINE_string('format', 'torchvision',
                                f'One of {list(model_export.CLI_FORMATS)}.')
  out = flags.DEFINE_string('out', None, 'The file to write (default: in the workdir).')
  layout = flags.DEFINE_enum('layout', 'nhwc', list(onnx_export.LAYOUTS),
                             'The ONNX model\'s image layout.')

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if not workdir.value:
      raise app.UsageError('--workdir=DIR is required')
    console.keep_quiet(verbose=False)  # before JAX starts its backends (and logs them)
    with run_errors.one_line_errors():
      chosen = encoder_export.parse_formats(formats.value, model_export.CLI_FORMATS)
      for written in model_export.export_formats(os.path.expanduser(workdir.value), chosen,
                                                 out.value, layout.value):
        print(written)

  app.run(main, flags_parser=installed.parse_flags)


if __name__ == '__main__':
  _main()
