r"""The study as one command: pretraining per starting point, linear evaluation and
fine-tuning at every label fraction and seed, then results.csv, report.md and figures.

  python -m simclr_jax.sweep --config=configs/study_demo.py --workdir=workdirs/study_demo

Started again on the same workdir, it skips the runs that finished. See
simclr_jax/evaluation/study.py for the layout.
"""

from simclr_jax import cli
from simclr_jax.evaluation import study

if __name__ == '__main__':
  cli.run(study.run_study)
