"""The binary (abnormal vs normal) grouping, by name or found from the class names."""

import pytest

from simclr_jax.runtime import metrics

CRIC = ('ASC-H', 'ASC-US', 'HSIL', 'LSIL', 'Negative for intraepithelial lesion', 'SCC')


def test_named_classes_and_a_clear_error_for_an_unknown_one():
  assert metrics.parse_positive_classes('HSIL, SCC', CRIC) == [2, 5]
  with pytest.raises(ValueError, match=r"\['CIN3'\] are not classes"):
    metrics.parse_positive_classes('HSIL,CIN3', CRIC)


def test_auto_takes_every_class_not_named_normal():
  assert metrics.parse_positive_classes('auto', CRIC) == [0, 1, 2, 3, 5]
  herlev = ('carcinoma in situ', 'light dysplastic', 'normal columnar', 'Normal superficiel')
  assert metrics.parse_positive_classes('auto', herlev) == [0, 1]
  # No class (or every class) reads as normal: no binary grouping rather than a wrong one.
  assert metrics.parse_positive_classes('auto', ('a', 'b')) == []
  assert metrics.parse_positive_classes('auto', ('normal a', 'benign b')) == []
