"""Subcommands of the ``crossmodal-har`` CLI, discovered by :mod:`crossmodal_har.cli`."""
