"""The one exception type for mistakes a user can make.

Every error a user can cause (a bad value, a missing folder, a checkpoint of another
architecture) is raised as :class:`UserError` with one line that names the bad value
and the fix; the CLI prints that line and exits non-zero without a traceback.
"""


class UserError(Exception):
    """A mistake in the user's input: the message names the value and the fix."""


class TrainingError(UserError):
    """Training stopped on purpose (for example a non-finite loss)."""
