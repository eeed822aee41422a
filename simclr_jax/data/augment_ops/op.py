"""AugmentOp: what the rest of the package needs to know about one augmentation.

The config keys themselves (default, rule, presets, doc) are declared in config/keys.py,
the layer below data; an op names the ones it owns.
"""

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True, eq=False)
class AugmentOp:
  """One augmentation op, declared beside its host and device functions."""
  name: str  # its name in config.findings.augmentations
  keys: tuple[str, ...]  # the config.augment keys it owns
  # Its random draws, name -> salt: the host folds the salt into the batch's seed; the
  # device splits each view's key into one key per name (device_augment._DRAWS).
  draws: dict[str, int]
  off: dict[str, Any]  # {key: value} that switch it off (the findings' no-augmentation start)
  # {key: value} that switch it on where the recipe has it off: the paper's ImageNet
  # strengths. `on` keeps each key's recipe value where it is > 0.
  strengths: dict[str, Any] = dataclasses.field(default_factory=dict)
  # (params) -> {key: value}, for ops that `strengths` cannot describe.
  switch_on: Callable[[Any], dict] | None = None

  def on(self, params) -> dict:
    """{key: value} that switch the op on at the strength of the recipe `params`
    (data.augment_params.AugmentParams)."""
    if self.switch_on is not None:
      return self.switch_on(params)
    return {key: value if (value := getattr(params, key)) > 0 else default
            for key, default in self.strengths.items()}
