"""One module per ``labkit`` subcommand: ``add_parser(commands)`` and ``run(args)``."""
