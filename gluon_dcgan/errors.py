"""The one exception a user can cause: it becomes one line on stderr and exit 2."""


class UserError(Exception):
    """Bad input: the message says what was wrong and what to do."""

    def __init__(self, message, exit_code=2):
        super().__init__(message)
        self.exit_code = exit_code
