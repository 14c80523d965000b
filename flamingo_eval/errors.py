"""The one exception type the CLI turns into a single clear line (exit code 2)."""


class UserError(Exception):
    """Bad input or configuration: the message names the file/field and the fix."""
