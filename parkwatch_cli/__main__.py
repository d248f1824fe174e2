"""``python -m parkwatch_cli`` runs the CLI (the demo launches its services this way)."""

from parkwatch_cli.app import app

app(prog_name="parkwatch")
