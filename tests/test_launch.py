"""The launch scripts: syntax, usage, and the commands they build (under DRY_RUN=1)."""

import os
import pathlib
import shlex
import subprocess
import time

import pytest

LAUNCH = pathlib.Path(__file__).resolve().parents[1] / 'launch'
SCRIPTS = sorted([*LAUNCH.glob('*.sh'), *LAUNCH.glob('*.sbatch')])

# What a user types after the launcher options; must reach python unchanged.
ARGS = [
    '--config=configs/cytology.py',
    '--workdir=gs://bucket/run 1',
    '--config.data.path=/data/Pap smears/cells',  # spaces, as class folders have
    "--config.positive_classes=HSIL,LSIL 'high grade'",  # commas and quotes
    '--config.batch_size=4096',
]
PYTHON_CMD = ['python', '-m', 'simclr_jax.pretrain', *ARGS]


def launch(script, *args, dry_run=True, **env_vars):
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(('SLURM_', 'TPU_', 'CUDA_VISIBLE'))}
  env.pop('DRY_RUN', None)
  if dry_run:
    env['DRY_RUN'] = '1'
  env.update(env_vars)
  return subprocess.run(['bash', str(LAUNCH / script), *args], env=env,
                        capture_output=True, text=True, timeout=60)


def commands(result):
  """The printed commands, each split as the shell would split it."""
  assert result.returncode == 0, result.stderr
  return [shlex.split(line) for line in result.stdout.splitlines()]


def flag(cmd, name):
  """The value of `name=VALUE` in cmd."""
  values = [a.split('=', 1)[1] for a in cmd if a.startswith(name + '=')]
  assert len(values) == 1, (name, cmd)
  return values[0]


@pytest.mark.parametrize('script', SCRIPTS, ids=lambda p: p.name)
def test_syntax(script):
  subprocess.run(['bash', '-n', str(script)], check=True)


@pytest.mark.parametrize('script', SCRIPTS, ids=lambda p: p.name)
@pytest.mark.parametrize('help_flag', ['-h', '--help'])
def test_usage(script, help_flag):
  result = launch(script.name, help_flag)
  assert result.returncode == 0
  assert 'Usage:' in result.stdout and '--config' in result.stdout


@pytest.mark.parametrize('script, args, message', [
    ('multi_gpu.sh', ['--workdir=w'], '--config'),
    ('multi_gpu.sh', ['--config=c.py'], '--workdir'),
    ('multi_gpu.sh', ['--entry=train', *ARGS], 'unknown --entry'),
    ('multi_gpu.sh', ['--processes=0', *ARGS], '--processes'),
    ('slurm.sbatch', ['--workdir=w'], '--config'),
    ('slurm.sbatch', ['--config=c.py'], '--workdir'),
    ('tpu_vm.sh', [], 'Usage:'),
    ('tpu_vm.sh', ['launch', '--name=t', '--zone=z'], 'unknown subcommand'),
    ('tpu_vm.sh', ['create', '--zone=z'], '--name'),
    ('tpu_vm.sh', ['create', '--name=t'], '--zone'),
    ('tpu_vm.sh', ['run', '--name=t', '--zone=z', '--workdir=gs://b'], '--config'),
    ('tpu_vm.sh', ['run', '--name=t', '--zone=z', '--config=c.py'], '--workdir'),
])
def test_missing_or_bad_arguments(script, args, message):
  result = launch(script, *args)
  assert result.returncode == 2
  assert message in result.stderr
  assert not result.stdout  # nothing was (or would have been) run


# --- Cloud TPU VM ---------------------------------------------------------------

def test_tpu_create():
  (cmd,) = commands(launch('tpu_vm.sh', 'create', '--name=simclr', '--zone=us-west4-a',
                           '--accelerator-type=v5litepod-16', '--spot'))
  assert cmd[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'simclr']
  assert flag(cmd, '--zone') == 'us-west4-a'
  assert flag(cmd, '--accelerator-type') == 'v5litepod-16'
  assert flag(cmd, '--version') == 'v2-alpha-tpuv5-lite'
  assert '--spot' in cmd  # other gcloud flags pass through


@pytest.mark.parametrize('accelerator, version', [
    ('v6e-8', 'v2-alpha-tpuv6e'), ('v5p-16', 'v2-alpha-tpuv5'),
    ('v4-32', 'tpu-ubuntu2204-base')])
def test_tpu_create_runtime_follows_generation(accelerator, version):
  (cmd,) = commands(launch('tpu_vm.sh', 'create', f'--accelerator-type={accelerator}',
                           TPU_NAME='t', TPU_ZONE='z'))
  assert flag(cmd, '--version') == version


def test_tpu_install_copies_tree_to_every_worker():
  pack, scp, ssh = commands(launch('tpu_vm.sh', 'install', '--name=t', '--zone=z',
                                   '--project=p'))
  assert pack[:2] == ['git', '-C'] and 'tar' in pack
  assert scp[:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'scp']
  assert '--worker=all' in scp and flag(scp, '--zone') == 'z'
  assert ssh[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 't']
  assert '--worker=all' in ssh and flag(ssh, '--project') == 'p'
  remote = flag(ssh, '--command')
  assert 'tar -xzf simclr_jax.tgz' in remote
  assert 'pip install -q -r requirements.txt "jax[tpu]==' in remote


def test_tpu_install_from_git():
  (ssh,) = commands(launch('tpu_vm.sh', 'install', '--name=t', '--zone=z',
                           '--repo=https://github.com/org/simclr_jax.git', '--ref=v1.0'))
  assert '--worker=all' in ssh
  remote = flag(ssh, '--command')
  assert 'git clone -q https://github.com/org/simclr_jax.git simclr_jax' in remote
  assert 'checkout -q --detach v1.0' in remote


def test_tpu_run_passes_arguments_through():
  result = launch('tpu_vm.sh', 'run', '--name=t', '--zone=z', *ARGS)
  (ssh,) = commands(result)
  assert ssh[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 't']
  assert '--worker=all' in ssh
  # The remote shell splits --command once more: the arguments must survive it.
  remote = shlex.split(flag(ssh, '--command'))
  assert remote[:3] == ['cd', 'simclr_jax', '&&']
  assert remote[3:] == ['.venv/bin/python', *PYTHON_CMD[1:]]
  assert not any('coordinator' in a for a in remote)  # auto-detected on TPU VMs
  assert 'warning' not in result.stderr


def test_tpu_run_entry_and_local_workdir_warning():
  result = launch('tpu_vm.sh', 'run', '--entry=linear_eval', '--config=c.py',
                  '--workdir=/tmp/w', TPU_NAME='t', TPU_ZONE='z')
  (ssh,) = commands(result)
  assert 'simclr_jax.linear_eval' in shlex.split(flag(ssh, '--command'))
  assert 'gs://' in result.stderr


def test_tpu_delete():
  (cmd,) = commands(launch('tpu_vm.sh', 'delete', '--name=t', '--zone=z', '--quiet'))
  assert cmd == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', 't', '--zone=z',
                 '--quiet']


# --- SLURM -------------------------------------------------------------------

def test_slurm_srun_passes_arguments_through():
  (cmd,) = commands(launch('slurm.sbatch', *ARGS))
  assert cmd == ['srun', '--kill-on-bad-exit=1', *PYTHON_CMD]


def test_slurm_entry():
  (cmd,) = commands(launch('slurm.sbatch', '--entry=finetune', *ARGS))
  assert cmd[2:5] == ['python', '-m', 'simclr_jax.finetune']
  assert cmd[5:] == ARGS


def test_slurm_directives():
  text = (LAUNCH / 'slurm.sbatch').read_text()
  directives = [l for l in text.splitlines() if l.startswith('#SBATCH')]
  assert any('--nodes=' in d for d in directives)
  assert any('--ntasks-per-node=' in d for d in directives)
  assert any('--gres=gpu:' in d or '--gpus-per-task' in d for d in directives)
  # sbatch stops reading directives at the first command.
  first_command = next(i for i, l in enumerate(text.splitlines())
                       if l.strip() and not l.startswith('#'))
  assert all(text.splitlines().index(d) < first_command for d in directives)


# --- one multi-GPU node ----------------------------------------------------------

def test_multi_gpu_one_process():
  (cmd,) = commands(launch('multi_gpu.sh', *ARGS))
  assert cmd == PYTHON_CMD


def test_multi_gpu_processes():
  cmds = commands(launch('multi_gpu.sh', '--processes=4', '--port=4321', *ARGS,
                         CUDA_VISIBLE_DEVICES='0,1,2,3,4,5,6,7'))
  assert len(cmds) == 4
  for i, cmd in enumerate(cmds):
    assert cmd[0] == 'env'
    assert cmd[1] == f'CUDA_VISIBLE_DEVICES={2 * i},{2 * i + 1}'
    assert cmd[2:2 + len(PYTHON_CMD)] == PYTHON_CMD
    assert cmd[2 + len(PYTHON_CMD):] == [
        '--coordinator_address=localhost:4321', '--num_processes=4',
        f'--process_id={i}']


def test_multi_gpu_gpu_list_errors():
  result = launch('multi_gpu.sh', '--processes=3', '--gpus=0,1,2,3', *ARGS)
  assert result.returncode == 2 and 'evenly' in result.stderr
  result = launch('multi_gpu.sh', '--processes=2', *ARGS)  # no GPUs known
  assert result.returncode == 2 and '--gpus' in result.stderr


def _fake_python(tmp_path, failing_id):
  """A stand-in for python: records its pid, then fails or sleeps."""
  fake = tmp_path / 'python'
  fake.write_text(f"""#!/usr/bin/env bash
id="${{@: -1}}"; id="${{id#--process_id=}}"
echo $$ > {tmp_path}/pid.$id
[[ "$id" == "{failing_id}" ]] && {{ sleep 1; exit 3; }}  # after the others are up
exec sleep "${{SLEEP:-30}}"  # exec: the pid is the sleeper, as python would be
""")
  fake.chmod(0o755)
  return fake


def test_multi_gpu_failure_stops_the_others(tmp_path):
  fake = _fake_python(tmp_path, failing_id=1)
  start = time.monotonic()
  result = launch('multi_gpu.sh', '--processes=3', '--gpus=0,1,2', *ARGS,
                  dry_run=False, PYTHON=str(fake))
  assert result.returncode == 3, result.stderr
  assert time.monotonic() - start < 20  # did not wait for the sleepers
  pid_1 = int((tmp_path / 'pid.1').read_text())
  assert f'process 1 of 3 (pid {pid_1}) failed first with exit status 3' in result.stderr
  assert_resume_command(result, LAUNCH / 'multi_gpu.sh', '--processes=3', '--gpus=0,1,2',
                        *ARGS)
  for i in (0, 2):
    pid = int((tmp_path / f'pid.{i}').read_text())
    for _ in range(50):  # SIGTERM was sent; give it a moment to land
      try:
        os.kill(pid, 0)
      except ProcessLookupError:
        break
      time.sleep(0.1)
    else:
      pytest.fail(f'process {i} (pid {pid}) still running')


def test_multi_gpu_success_waits_for_all(tmp_path):
  fake = _fake_python(tmp_path, failing_id=-1)
  result = launch('multi_gpu.sh', '--processes=2', '--gpus=0,1', *ARGS,
                  dry_run=False, PYTHON=str(fake), SLEEP='0.5')
  assert result.returncode == 0, result.stderr
  assert (tmp_path / 'pid.0').exists() and (tmp_path / 'pid.1').exists()


def assert_resume_command(result, *command):
  """The last line on stderr ends with the command that resumes the run, as typed."""
  last = result.stderr.strip().splitlines()[-1]
  assert 'To resume from the last checkpoint in the workdir' in last, result.stderr
  typed = last.split(': ', 2)[-1]
  assert shlex.split(typed) == [str(c) for c in command]


def _fake_command(tmp_path, name, status):
  fake = tmp_path / name
  fake.write_text(f'#!/usr/bin/env bash\nexit {status}\n')
  fake.chmod(0o755)
  return {'PATH': f"{tmp_path}:{os.environ['PATH']}"}


def test_multi_gpu_one_process_failure_says_how_to_resume(tmp_path):
  _fake_command(tmp_path, 'python', 3)
  result = launch('multi_gpu.sh', *ARGS, dry_run=False, PYTHON=str(tmp_path / 'python'))
  assert result.returncode == 3
  assert 'the run failed first with exit status 3' in result.stderr
  assert_resume_command(result, LAUNCH / 'multi_gpu.sh', *ARGS)


def test_slurm_failure_says_how_to_resume(tmp_path):
  result = launch('slurm.sbatch', *ARGS, dry_run=False,
                  **_fake_command(tmp_path, 'srun', 137))
  assert result.returncode == 137
  assert "srun exit status 137); srun's first 'task N' line" in result.stderr
  assert_resume_command(result, 'sbatch', 'launch/slurm.sbatch', *ARGS)


def test_tpu_run_failure_says_how_to_resume(tmp_path):
  result = launch('tpu_vm.sh', 'run', '--name=t', '--zone=z', *ARGS, dry_run=False,
                  **_fake_command(tmp_path, 'gcloud', 255))
  assert result.returncode == 255
  assert 'failed on at least one worker (exit status 255)' in result.stderr
  assert_resume_command(result, LAUNCH / 'tpu_vm.sh', 'run', '--name=t', '--zone=z', *ARGS)
