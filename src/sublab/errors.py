"""Error types the CLI turns into one-line messages."""


class SublabError(Exception):
    """A user-facing error: bad input, a missing file, an impossible setting.

    The CLI prints ``str(error)`` on one line and exits with status 2. Messages name the file, line or field.
    """
