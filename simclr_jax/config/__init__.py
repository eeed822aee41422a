"""What a run is told: every key declared once with its default, rule and documentation
(keys.py), the ConfigDict built from them (defaults.py) and the checks (checks.py). It
imports nothing of the project but errors.py, so every layer may read it."""
