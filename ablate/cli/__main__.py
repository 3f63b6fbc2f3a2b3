"""`python -m ablate.cli`: the same as the `ablate` command (what a Ray job runs)."""

from __future__ import annotations

from ablate.cli import run

run()
