"""What a run is told: every key's default (defaults.py), its type and range (checks.py),
and the command line that fills and checks a config (cli.py). It reads the choices the
layers below offer (loss names, architectures, presets), so it sits above them; the code
below never imports it: it receives a ConfigDict."""
