"""Test setup: 8 simulated CPU devices, so sharded code is tested as it runs on a pod."""

import os

# Must happen before jax is imported anywhere in the test process.
# The suite compiles hundreds of tiny programs and runs each for a few steps, so LLVM's
# optimisation passes cost more than they save: level 0 cut one file's CPU time by 38 %.
# No fast-math, but the level changes float rounding: runs compared with each other compile
# at the same level. Subprocesses that set XLA_FLAGS of their own (a device count) pass
# this flag on too; without it a tiny pretraining subprocess took 73 s of CPU instead of 36.
FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8 "
    + FAST_COMPILE_FLAG
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Many tests (and their subprocesses, which inherit the environment) compile the same tiny
# models: a persistent compilation cache saves most of the suite's compile time. Every
# program is cached, even the small ones: a new process builds a model from dozens of
# eager initialiser ops, each a compilation, and reading them back cut a tiny pretraining
# subprocess from 27 s to 18 s.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def cric_cervix_path():
  path = SHARED_DATASETS / "cric_cervix"
  if not path.is_dir():
    pytest.skip(f"{path} is not present")
  return path


# The suite runs in 2 pytest-xdist workers (`-n 2`, pyproject.toml's addopts): the tests
# compile one program at a time, so a second worker uses the second core. Each file's tests
# stay in one worker (its module fixtures are built once), and tests/inference's files
# share one worker, where their trained run (tiny_trained_runs.py) is made once. The files
# that take minutes start first, so that no worker is left with a long one at the end.
_LONGEST_FIRST = ('runtime/test_multiprocess.py', 'training/test_pretrain.py', 'inference',
                  'experiments/test_evaluation_study.py', 'experiments/test_findings.py',
                  'data/test_without_tensorflow.py', 'experiments/test_study_folds.py',
                  'training/test_resume_safety.py')


def _unit(nodeid: str) -> str:
  """A test's node id -> the unit one worker runs whole: its file relative to tests/, or
  the inference folder."""
  path = pathlib.PurePosixPath(nodeid.split("::", 1)[0]).relative_to("tests")
  return path.parent.as_posix() if path.parent.name == "inference" else path.as_posix()


def pytest_collection_modifyitems(config, items):
  rank = {unit: i for i, unit in enumerate(_LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(_unit(item.nodeid), len(rank)))  # stable


# The grouping is a scheduler of our own (xdist's public hook), not xdist's `loadgroup`
# marks: pytest-xdist 3.8 sets the group on a node id field that pytest 9 no longer reads,
# and a file's tests then ran on both workers, each building the file's module fixtures.
@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
  from xdist.scheduler import LoadScopeScheduling  # pylint: disable=import-outside-toplevel

  class ByFileOrFolder(LoadScopeScheduling):
    """Work units in collection order (longest first): a file, or tests/inference."""

    def _split_scope(self, nodeid):
      return _unit(nodeid)

  config.option.loadscopereorder = False  # keep the longest-first order, not by test count
  return ByFileOrFolder(config, log)
