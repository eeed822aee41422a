"""Synthetic Pap-smear-like single cells, generated with numpy from a seed (no download).

Five classes in the spirit of SIPaKMeD. Each image is one cell: a cytoplasm shape in a
Papanicolaou stain colour (cyan, pink or orange, drawn independently of the class) on a
light background with debris, and a nucleus. The class sets the cell's shape, the
nucleus-to-cytoplasm size ratio, nuclear darkness, chromatin texture and membrane
irregularity (and a perinuclear halo for koilocytes), with ranges that overlap; position,
rotation, scale and colours are random, so no class can be told from one pixel or the
colour histogram, but shape and texture separate them. Image i of a seed is the same
whatever the number of images; labels cycle through the classes (balanced).

`channels` (config.data.channels) converts the same RGB cells, for grey and multi-channel
tests: 1 is the luma grey image; C other than 1 and 3 stacks R, G, B, then the inverted
255 - R, 255 - G, 255 - B (dark background, bright objects, like fluorescence), cycling
until C channels.
"""

import dataclasses

import numpy as np

CLASS_NAMES = ('superficial-intermediate', 'parabasal', 'koilocytotic', 'dyskeratotic',
               'metaplastic')


@dataclasses.dataclass(frozen=True)
class CellClass:
  cyto_radius: tuple  # of the half side, before the global scale
  elongation: tuple
  cyto_wobble: float  # amplitude of the outline's harmonics
  spiky: bool  # metaplastic cells' angular processes
  nucleus_ratio: tuple  # nucleus radius / cytoplasm radius
  darkness: tuple
  chromatin_grain: int  # cells across the nucleus texture grid (smaller = coarser)
  chromatin_contrast: tuple
  irregularity: tuple  # nuclear membrane
  halo: tuple = (0.0, 0.0)  # perinuclear clearing radius / nucleus radius
  vacuoles: int = 0


CLASSES = (
    CellClass((0.70, 0.85), (1.0, 1.4), 0.10, False, (0.12, 0.18), (0.45, 0.75), 14,
              (0.02, 0.08), (0.0, 0.03)),
    CellClass((0.42, 0.55), (1.0, 1.15), 0.03, False, (0.40, 0.52), (0.45, 0.70), 12,
              (0.05, 0.12), (0.0, 0.04)),
    CellClass((0.65, 0.80), (1.0, 1.3), 0.08, False, (0.22, 0.30), (0.55, 0.85), 6,
              (0.15, 0.30), (0.08, 0.16), halo=(1.8, 2.5)),
    CellClass((0.38, 0.50), (1.2, 1.8), 0.10, False, (0.32, 0.42), (0.70, 0.95), 5,
              (0.20, 0.35), (0.12, 0.22)),
    CellClass((0.48, 0.60), (1.0, 1.25), 0.06, True, (0.28, 0.36), (0.50, 0.75), 10,
              (0.05, 0.12), (0.02, 0.07), vacuoles=4),
)

_STAINS = np.array([[0.50, 0.78, 0.80], [0.90, 0.60, 0.70], [0.95, 0.70, 0.42]])
_NUCLEUS = np.array([0.22, 0.16, 0.40])


def _smooth_noise(rng, size: int, grain: int) -> np.ndarray:
  """Zero-mean unit-ish noise with `grain` cells across, bilinearly upsampled."""
  grid = rng.standard_normal((grain + 1, grain + 1))
  pos = np.linspace(0, grain, size, endpoint=False)
  i0 = pos.astype(int)
  f = pos - i0
  rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
  return rows[:, i0] * (1 - f)[None] + rows[:, i0 + 1] * f[None]


def _outline(rng, theta, amplitude, harmonics=range(2, 7)):
  radius = np.ones_like(theta)
  for k in harmonics:
    radius += amplitude / k ** 0.5 * rng.uniform(-1, 1) * np.cos(k * theta + rng.uniform(0, 6.3))
  return radius


def _blend(image, colour, alpha):
  image += alpha[..., None] * (np.asarray(colour) - image)


def make_cell(rng, label: int, size: int) -> np.ndarray:
  cls = CLASSES[label]
  half = size / 2
  y, x = np.mgrid[0:size, 0:size].astype(np.float64) - half + 0.5
  image = np.empty((size, size, 3))
  image[:] = np.clip(0.92 + rng.normal(0, 0.02, 3), 0, 1)

  # Cytoplasm: a rotated, elongated blob with a wobbly (or spiky) outline.
  scale = rng.uniform(0.75, 1.1)
  radius = rng.uniform(*cls.cyto_radius) * scale * half
  cy, cx = rng.uniform(-0.12, 0.12, 2) * size
  angle, elong = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(*cls.elongation))
  u = ((x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)) / elong
  v = (-(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)) * elong
  rho, theta = np.hypot(u, v), np.arctan2(v, u)
  edge = radius * _outline(rng, theta, cls.cyto_wobble)
  if cls.spiky:
    k = rng.integers(3, 6)
    edge *= 1 + 0.35 * np.abs(np.cos(k * theta / 2 + rng.uniform(0, 3))) ** 6
  cyto = 1 / (1 + np.exp(-(edge - rho) / 0.7))
  stain = _STAINS[rng.integers(3)] + rng.normal(0, 0.04, 3)
  texture = 1 + 0.06 * _smooth_noise(rng, size, 8)
  _blend(image, np.clip(stain, 0, 1), cyto * rng.uniform(0.45, 0.8) * texture)
  for _ in range(cls.vacuoles):  # small clear vacuoles inside the cytoplasm
    vy, vx = rng.uniform(-0.6, 0.6, 2) * radius
    spot = np.exp(-((x - cx - vx) ** 2 + (y - cy - vy) ** 2) / (2 * rng.uniform(0.6, 1.4) ** 2))
    _blend(image, image[int(half), 0], spot * cyto * 0.7)

  # Nucleus, offset within the cytoplasm, with an irregular membrane and chromatin.
  n_radius = radius * rng.uniform(*cls.nucleus_ratio)
  ny, nx = rng.uniform(-0.25, 0.25, 2) * radius
  dy, dx = y - cy - ny, x - cx - nx
  n_rho, n_theta = np.hypot(dx, dy), np.arctan2(dy, dx)
  if cls.halo[1] > 0:
    halo = n_radius * rng.uniform(*cls.halo) * _outline(rng, n_theta, 0.15)
    clear = 1 / (1 + np.exp(-(halo - n_rho) / 0.8)) * cyto
    _blend(image, image[0, 0] * 0.5 + 0.5 * np.array([0.95, 0.95, 0.93]), clear * 0.85)
  n_edge = n_radius * _outline(rng, n_theta, rng.uniform(*cls.irregularity) * 2,
                               range(2, 9))
  nucleus = 1 / (1 + np.exp(-(n_edge - n_rho) / 0.5))
  grain = max(2, int(cls.chromatin_grain * n_radius / 8))
  chromatin = 1 + rng.uniform(*cls.chromatin_contrast) * 3 * _smooth_noise(rng, size, grain)
  darkness = rng.uniform(*cls.darkness)
  _blend(image, _NUCLEUS + rng.normal(0, 0.03, 3),
         np.clip(nucleus * darkness * chromatin, 0, 1))

  # Debris: small specks of stain anywhere, then sensor noise.
  for _ in range(rng.integers(0, 7)):
    sy, sx = rng.uniform(-half, half, 2)
    speck = np.exp(-((x - sx) ** 2 + (y - sy) ** 2) / (2 * rng.uniform(0.4, 1.2) ** 2))
    colour = [_NUCLEUS, _STAINS[1], _STAINS[2]][rng.integers(3)]
    _blend(image, colour, speck * rng.uniform(0.3, 0.8))
  image += rng.normal(0, 0.015, image.shape)
  return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


def with_channels(images: np.ndarray, channels: int) -> np.ndarray:
  """uint8 RGB [..., 3] -> [..., channels] (the module doc's conversion)."""
  if channels == 3:
    return images
  if channels == 1:
    luma = images.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.round(luma).astype(np.uint8)[..., None]
  cycle = np.concatenate([images, 255 - images], axis=-1)
  return cycle[..., np.arange(channels) % 6]


def generate(num: int, size: int, seed: int,
             channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 [num, size, size, channels], int32 labels [num]); labels cycle 0..4."""
  labels = np.arange(num, dtype=np.int32) % len(CLASSES)
  images = np.stack([make_cell(np.random.default_rng([seed, i]), int(labels[i]), size)
                     for i in range(num)]) if num else np.zeros((0, size, size, 3), np.uint8)
  return with_channels(images, channels), labels
