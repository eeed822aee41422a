"""Runs of many evaluations and what they show: the study (study.py) and the findings
grid (findings_grid.py), their reports, and the paired comparisons between arms."""
