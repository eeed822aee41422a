r"""The paper's findings on your own images as one command: augmentation composition, the
projection head, batch size × training length, the loss and the temperature, each a grid
of pretrainings with the study's linear evaluation; then results.csv, report.md and one
figure per finding.

  python -m simclr_jax.findings --config=configs/findings_demo.py --workdir=W
  python -m simclr_jax.findings --config=configs/findings_cric.py --workdir=W \
      --config.findings.run=heads,augmentations

Started again on the same workdir, it skips the runs that finished; a failed run is
recorded, the others go on, and the command ends with exit status 1 naming it. See
simclr_jax/experiments/findings_grid.py for the grids and the layout.
"""

from simclr_jax.experiments import findings_grid
from simclr_jax.runtime import cli, console, distributed
from simclr_jax.runtime.run_errors import RunStopped


def run_and_summarize(config, workdir: str) -> dict:
  summary = findings_grid.run_findings(config, workdir)
  if distributed.is_main_process():
    console.say(f"findings finished: {summary['num_runs']} linear evaluations\n"
                f"report: {summary['report']}")
  if summary['failed']:
    names = ', '.join(f"{r['finding']}/{r['variant']}/seed{r['seed']}/{r['layer']}"
                      for r in summary['failed'])
    raise RunStopped(f"{len(summary['failed'])} of {summary['num_runs']} runs failed "
                     f'({names}); report.md says why. Start again with the same workdir to '
                     'run only those.')
  return summary


if __name__ == '__main__':
  cli.run(run_and_summarize)
