"""System checks for the MAILROOM setting (filled in below)."""
