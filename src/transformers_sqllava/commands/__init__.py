"""The subcommands of the `sqllava` command, one module each (see `transformers_sqllava.cli`)."""
