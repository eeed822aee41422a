r"""The study as one command: pretraining per starting point, linear evaluation and
fine-tuning at every label fraction and seed, then results.csv, report.md and figures.

  python -m simclr_jax.sweep --config=configs/study_demo.py --workdir=workdirs/study_demo

Started again on the same workdir, it skips the runs that finished. A sub-run that fails
is recorded as failed, the others go on, and the sweep ends with exit status 1 and a line
saying which failed. See simclr_jax/experiments/study.py for the layout.
"""

from simclr_jax.experiments import study, study_report
from simclr_jax.runtime import cli, console, distributed
from simclr_jax.runtime.run_errors import RunStopped


def run_and_summarize(config, workdir: str) -> dict:
  summary = study.run_study(config, workdir)
  if distributed.is_main_process():
    lines = [f"study finished: {summary['num_runs']} evaluations", '']
    lines += study_report.headline(study.parse_starting_points(config), summary['rows'],
                             config.study.confidence, config.study.headline)
    lines.append(f"report: {summary['report']}")
    console.say('\n'.join(lines))
  if summary['failed']:
    names = ', '.join(f"{'fold_%s/' % r['fold'] if 'fold' in r else ''}"
                      f"{r['starting_point']}/{r['protocol']}/frac_{r['label_fraction']:g}/"
                      f"seed_{r['seed']}" for r in summary['failed'])
    raise RunStopped(f"{len(summary['failed'])} of {summary['num_runs']} sub-runs failed "
                     f"({names}); report.md says why. Start the sweep again with the same "
                     'workdir to run only those.')
  return summary


if __name__ == '__main__':
  cli.run(run_and_summarize)
