"""What every run stands on: the device mesh, multi-process start, the workdir lock, the
run's errors, and its results on disk (metrics.json, TensorBoard)."""
