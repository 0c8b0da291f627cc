"""One module per `handgrad` command: HELP, add_arguments(parser), run(args) -> exit status."""
