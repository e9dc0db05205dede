"""The one exception type for mistakes a user can fix (bad file, bad shape, bad option)."""


class LabkitError(Exception):
    """A problem with the user's input; the CLI prints it as one line and exits with status 2."""
