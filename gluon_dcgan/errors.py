"""The one exception a user can cause (it becomes one line on stderr and exit 2), and the
helpers that shorten a library's many-line message to the one line that gives its reason."""


class UserError(Exception):
    """Bad input: the message says what was wrong and what to do."""

    def __init__(self, message, exit_code=2):
        super().__init__(message)
        self.exit_code = exit_code


def _lines(exc):
    return [line.strip() for line in str(exc).splitlines() if line.strip()]


def first_line(exc, limit=160):
    """The first non-blank line of `exc`'s message, at most `limit` characters; for an
    empty message, the exception's class name (requests' and OSError's messages lead
    with their reason)."""
    lines = _lines(exc)
    return (lines[0] if lines else type(exc).__name__)[:limit]


def last_line(exc, limit=200, empty=None):
    """The last non-blank line of `exc`'s message (or of a text, such as a process's
    stderr), at most `limit` characters; for an empty one, `empty` or else the class
    name. MXNetError's text is a C++ traceback whose last line holds the reason."""
    lines = _lines(exc)
    return (lines[-1] if lines else empty or type(exc).__name__)[:limit]
