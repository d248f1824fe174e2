"""``python -m parkwatch`` runs the CLI (the demo launches its services this way)."""

from parkwatch.cli import app

app(prog_name="parkwatch")
