"""One module per ``labkit`` subcommand: ``add_parser(commands)`` and ``run(args)``; each
imports the library (NumPy and the rest) inside ``run``, so that building the parser for
``labkit --help`` stays light (``labkit/options.py`` has what a parser shows)."""
