"""The one exception type for mistakes a user can fix (bad file, bad shape, bad option)."""


class LabkitError(Exception):
    """A problem with the user's input; the CLI prints it as one line and exits with status 2."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
