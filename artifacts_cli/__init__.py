"""The ``artifacts`` command."""
