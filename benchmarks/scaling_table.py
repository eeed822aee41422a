r"""Prints docs/scaling.md's tables: the SimCLR step's time split into compute, the NT-Xent
matrix, the all-gather of z, batch-norm synchronisation and the gradient all-reduce, and
the host cores the input needs, for TPU v4 / v5p slices and 8×H100 nodes.

  python benchmarks/scaling_table.py [--model=resnet50|resnet18] [--batches=4096,...,65536]

Every figure comes from the formulas below, the project's measured single-H100 steps
(README, Performance) and the hardware numbers in HARDWARE, each an assumption that
this script states and that you can change here. Standard library only.
"""

import argparse
import dataclasses

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Model:
  """What one device does per step, from two measured H100 steps: time = t0 + t1·b."""
  name: str
  measured: tuple  # ((per-device batch, step seconds), (…)) on one H100, bfloat16
  params: int  # f, g and the online probe (float32): the gradient all-reduce
  bn_layers: int  # each a small all-reduce in the forward pass and one in the backward
  embed_dim: int  # z, float32: the all-gathered keys
  plain_step_gib: tuple | None  # (fixed, per image) GiB of the plain step, if measured
  grad_cache_gib: tuple | None  # (fixed, per image) GiB with grad_cache_chunk=8
  input_per_core: float  # images/s one host core augments (two views each)

  @property
  def per_image_s(self) -> float:
    (b0, t0), (b1, t1) = self.measured
    return (t1 - t0) / (b1 - b0)

  @property
  def fixed_s(self) -> float:
    (b0, t0), _ = self.measured
    return t0 - b0 * self.per_image_s


MODELS = {
    # README Performance: 2,954 img/s at b256 (86.7 ms), 3,090 at b512 (165.7 ms).
    # Parameters: 23.5 M encoder + 4.5 M head + 2.0 M probe (1,000 classes). Memory: the
    # b512 step ran on an 80 GB H100, so the plain step needs at most (74.5 - 0.37) / 512
    # = 0.145 GiB per image; 0.144 used. (README "Large batches" gives 0.285 from XLA's
    # memory analysis, which that measurement contradicts.) Gradient caching with chunk 8:
    # 0.0011 GiB per image beyond the chunk.
    # Input: 540-563 img/s on 2 cores from decoded images (input_bench).
    'resnet50': Model('ResNet-50, 224 px', ((256, 0.0867), (512, 0.1657)), 30_017_704, 54,
                      128, (0.37, 0.144), (0.37 + 0.144 * 8, 0.0011), 275.0),
    # 39,600 img/s at b512 (12.9 ms), 43,363 at b1024 (23.6 ms); 11.5 M parameters; the
    # CIFAR pipeline augments 13,100 img/s per core. Memory not measured (b1024 fits).
    'resnet18': Model('ResNet-18 small stem, 32 px', ((512, 0.0129), (1024, 0.0236)),
                      11_502_794, 21, 128, None, None, 13_100.0),
}


@dataclasses.dataclass(frozen=True)
class Hardware:
  name: str
  devices_per_host: int
  host_cores: int  # CPU cores (vCPUs) per host for the input pipeline
  hbm_gib: float
  speed_vs_h100: float  # how much faster the model's step runs than on an H100
  fp32_matmul_tflops: float  # the NT-Xent matmuls run at Precision.HIGHEST (float32)
  hbm_gbps: float
  # Collective bandwidth per device, GB/s, as all-gather/reduce-scatter see it (one way).
  near_gbps: float  # within the fast domain (NVLink node; the whole ICI slice on TPU)
  far_gbps: float | None  # between nodes (InfiniBand), per device; None: one domain
  near_size: int  # devices in the fast domain (8 on a DGX node; the slice on TPU)
  latency_s: float  # one small all-reduce (batch-norm statistics)
  far_latency_s: float


# Assumptions (vendor figures; efficiencies are ours):
# - H100 SXM: 989 TFLOP/s bf16 dense, 67 TFLOP/s fp32, 3,350 GB/s HBM3, 80 GB. NVLink 4:
#   900 GB/s per GPU both ways; NCCL reaches about 360 GB/s one way in all-gather and
#   reduce-scatter. One 400 Gb/s NDR InfiniBand NIC per GPU (50 GB/s), about 40 GB/s
#   reached. DGX H100 host: 2 × 56 cores. Small all-reduce: 15 µs in a node, 40 µs across.
# - TPU v4: 275 TFLOP/s bf16, 1,200 GB/s HBM2, 32 GiB; all-reduce bandwidth 1.1 PB/s per
#   4,096-chip pod, i.e. 268 GB/s per chip; 4 chips and (assumed) 240 vCPUs per host.
# - TPU v5p: 459 TFLOP/s bf16, 2,765 GB/s HBM2e, 95 GiB; ICI 1,200 GB/s per chip both
#   ways, 600 GB/s one way assumed usable; 4 chips and 208 vCPUs per host.
# - TPUs run HIGHEST-precision float32 matmuls as 6 bf16 passes; small ICI all-reduce 10 µs.
# - Speed relative to H100: ResNet training at these sizes is bound by memory traffic as
#   much as by FLOPs (the H100 step above reaches about 7 % of its bf16 peak), so the
#   smaller of the bf16-FLOP ratio and the HBM-bandwidth ratio: v4 0.28, v5p 0.46.
def _tpu_speed(tflops, hbm):
  return min(tflops / 989.0, hbm / 3350.0)


HARDWARE = {
    'h100': Hardware('H100 (8 per node)', 8, 112, 74.5, 1.0, 67.0, 3350.0, 360.0, 40.0, 8,
                     15e-6, 40e-6),
    'v4': Hardware('TPU v4', 4, 240, 32.0, _tpu_speed(275, 1200), 275 / 6, 1200.0, 268.0,
                   None, 10**9, 10e-6, 10e-6),
    'v5p': Hardware('TPU v5p', 4, 208, 95.0 * 0.93, _tpu_speed(459, 2765), 459 / 6, 2765.0,
                    600.0, None, 10**9, 10e-6, 10e-6),
}
SLICES = {'h100': (8, 32, 128, 512), 'v4': (32, 128, 512), 'v5p': (32, 128, 512)}


# ----------------------------------------------------------------------------- formulas


def gather_seconds(total_bytes, n, hw: Hardware) -> float:
  """All-gather (or reduce-scatter) of an array of `total_bytes` over n devices, ring or
  hierarchical: inside the fast domain each device moves (k-1)/k of it; across nodes the
  node's NICs share the (nodes-1)/nodes that comes from elsewhere."""
  near = min(n, hw.near_size)
  t = (near - 1) / near * total_bytes / (hw.near_gbps * 1e9)
  nodes = n // near
  if nodes > 1 and hw.far_gbps:
    t += (nodes - 1) / nodes * total_bytes / (near * hw.far_gbps * 1e9)
  return t


def all_reduce_seconds(total_bytes, n, hw) -> float:
  return 2 * gather_seconds(total_bytes, n, hw)  # reduce-scatter, then all-gather


def compute_seconds(model: Model, b: int, hw: Hardware, other_gib: float = 0.0) -> tuple:
  """(seconds, GiB of activations or None, gradient caching?): the measured per-device
  step line scaled to the hardware; with gradient caching (a second forward, +1/3 of the
  per-image work) when the plain step's activations and `other_gib` do not fit."""
  if not model.plain_step_gib:
    return (model.fixed_s + model.per_image_s * b) / hw.speed_vs_h100, None, False
  fixed_gib, per_image_gib = model.plain_step_gib
  gib, cached = fixed_gib + per_image_gib * b, False
  if gib + other_gib > hw.hbm_gib:
    fixed_gib, per_image_gib = model.grad_cache_gib
    gib, cached = fixed_gib + per_image_gib * b, True
  per_image = model.per_image_s * (4 / 3 if cached else 1)
  return (model.fixed_s + per_image * b) / hw.speed_vs_h100, gib, cached


def nt_xent_seconds(model: Model, B: int, n: int, hw: Hardware) -> tuple:
  """(seconds, GiB): each device's 2B/n rows against all 2B columns: 3 matmuls of
  2·rows·2B·D flops (forward, two in the backward) in float32, and about 10 float32
  passes over the [rows, 2B] matrix; about 4 such matrices live at once."""
  rows, cols = 2 * B / n, 2 * B
  flops = 3 * 2 * rows * cols * model.embed_dim
  elements = rows * cols
  seconds = flops / (hw.fp32_matmul_tflops * 1e12) + 10 * 4 * elements / (hw.hbm_gbps * 1e9)
  return seconds, 4 * 4 * elements / GIB


def z_gather_seconds(model: Model, B: int, n: int, hw: Hardware) -> float:
  """The keys z [2B, D] float32 gathered in the forward pass, their gradient
  reduce-scattered in the backward."""
  return 2 * gather_seconds(2 * B * model.embed_dim * 4, n, hw)


def bn_sync_seconds(model: Model, n: int, hw: Hardware) -> float:
  """Global batch norm: one tiny all-reduce per BN layer forward and one backward,
  latency-bound (mean and variance travel together)."""
  latency = hw.latency_s if n <= hw.near_size else hw.far_latency_s
  return 2 * model.bn_layers * latency


def grad_seconds(model: Model, n: int, hw: Hardware) -> float:
  return all_reduce_seconds(model.params * 4, n, hw)


def row(model: Model, hw: Hardware, n: int, B: int) -> dict | None:
  if B % n:
    return None
  b = B // n
  loss, loss_gib = nt_xent_seconds(model, B, n, hw)
  compute, gib, cached = compute_seconds(model, b, hw, loss_gib)
  gather, bn, grads = z_gather_seconds(model, B, n, hw), bn_sync_seconds(model, n, hw), \
      grad_seconds(model, n, hw)
  device_step = compute + loss + gather + bn + grads
  input_step = b * hw.devices_per_host / (hw.host_cores * model.input_per_core)
  step = max(device_step, input_step)  # the input pipeline runs ahead, in parallel
  # One device alone at the larger measured batch, on this hardware.
  _, (b_ref, t_ref) = model.measured
  alone = b_ref / (t_ref / hw.speed_vs_h100)
  return {
      'devices': n, 'batch': B, 'per_device': b, 'compute_ms': 1e3 * compute,
      'grad_cache': cached,
      'out_of_memory': gib is not None and gib + loss_gib > hw.hbm_gib,
      'loss_ms': 1e3 * loss, 'loss_gib': loss_gib, 'gather_ms': 1e3 * gather,
      'bn_ms': 1e3 * bn, 'grads_ms': 1e3 * grads, 'step_ms': 1e3 * step,
      'images_per_s': B / step, 'efficiency': B / step / n / alone,
      'cores_needed': hw.devices_per_host * b / (device_step * model.input_per_core),
      'input_bound': input_step > device_step,
  }


# ----------------------------------------------------------------------------- printing

_HEADER = ('| devices | global batch | per device | compute ms | NT-Xent ms (GiB) | z gather ms '
           '| BN sync ms | grad all-reduce ms | step ms | images/s | per device vs. alone '
           '| host cores needed |')


def print_table(model: Model, hw: Hardware, slices, batches):
  print(f'\n### {model.name} on {hw.name}\n')
  print(_HEADER)
  print('|' + ' --- |' * (_HEADER.count('|') - 1))
  for n in slices:
    for B in batches:
      r = row(model, hw, n, B)
      if r is None:
        continue
      compute = (f"{r['compute_ms']:.1f}" + (' (gc)' if r['grad_cache'] else '')
                 + (' **OOM**' if r['out_of_memory'] else ''))
      cores = f"{r['cores_needed']:.0f} of {hw.host_cores}" + (' **input-bound**'
                                                                if r['input_bound'] else '')
      print(f"| {n} | {B:,} | {r['per_device']:,} | {compute} | {r['loss_ms']:.1f} "
            f"({r['loss_gib']:.1f}) | {r['gather_ms']:.2f} | {r['bn_ms']:.2f} "
            f"| {r['grads_ms']:.2f} | {r['step_ms']:.1f} | {r['images_per_s']:,.0f} "
            f"| {100 * r['efficiency']:.0f} % | {cores} |")


def print_assumptions(model: Model):
  print(f'\n{model.name}: per-device step on one H100 = {1e3 * model.fixed_s:.2f} ms + '
        f'{1e3 * model.per_image_s:.4f} ms × images (from the measured '
        f'{model.measured[0][0]} and {model.measured[1][0]}-image steps); '
        f'{model.params / 1e6:.1f} M parameters, {model.bn_layers} batch-norm layers, '
        f'z of {model.embed_dim} floats.')
  for key, hw in HARDWARE.items():
    print(f'  {hw.name}: speed vs. H100 {hw.speed_vs_h100:.2f}, collective '
          f'{hw.near_gbps:.0f} GB/s per device'
          + (f' in a node of {hw.near_size}, {hw.far_gbps:.0f} GB/s across nodes'
             if hw.far_gbps else '') + f', {hw.hbm_gib:.0f} GiB usable HBM, '
          f'{hw.host_cores} host cores per {hw.devices_per_host} devices')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model', choices=sorted(MODELS), action='append')
  parser.add_argument('--hardware', choices=sorted(HARDWARE), action='append')
  parser.add_argument('--batches', default='4096,8192,16384,32768,65536')
  args = parser.parse_args()
  batches = [int(b) for b in args.batches.split(',')]
  for name in args.model or ['resnet50', 'resnet18']:
    model = MODELS[name]
    print_assumptions(model)
    for key in args.hardware or ['h100', 'v4', 'v5p']:
      print_table(model, HARDWARE[key], SLICES[key], batches)


if __name__ == '__main__':
  main()
