"""Subcommands of the `sqllava` command that are not part of a library module (see `transformers_sqllava.cli`)."""
