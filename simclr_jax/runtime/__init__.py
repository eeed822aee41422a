"""What every run stands on: the command line (cli.py), the device mesh, multi-process
start, the workdir lock, the run's errors, and its results on disk (metrics.json,
TensorBoard)."""
