"""The one exception type the CLI turns into a clear message and exit code 2."""


class UserError(Exception):
    """A problem with what the user asked for or gave us (config, data, paths).

    The message names the problem and the fix in one line; the CLI prints it
    without a traceback and exits with code 2.
    """


class ConfigError(UserError):
    """An invalid configuration value or key."""


class DataError(UserError):
    """Missing, corrupt or unsafe dataset files."""
