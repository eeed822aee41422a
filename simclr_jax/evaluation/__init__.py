"""Evaluation of a pretrained encoder: linear evaluation, fine-tuning, kNN, and the study
that runs them all (see study.py)."""
