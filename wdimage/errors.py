"""The one user-facing error type and the named exit codes (DESIGN.md)."""

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # the operation failed: a build or a drill did not succeed
    USAGE = 2  # bad input or usage; the message names the file, line or option
    NOT_EFFECTIVE = 3  # requested kernel config values did not take effect


class WdimageError(Exception):
    """An error shown to the user as one message (and a hint), never a traceback."""

    def __init__(self, message: str, hint: str | None = None, code: ExitCode = ExitCode.USAGE):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


def usage_error(message: str, hint: str | None = None) -> WdimageError:
    return WdimageError(message, hint, ExitCode.USAGE)


def failure(message: str, hint: str | None = None) -> WdimageError:
    return WdimageError(message, hint, ExitCode.FAILED)


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived (wdimage.cli turns each into this exception in the main thread):
    a BaseException, so that no `except Exception` swallows it and every `finally` cleanup runs. The exit
    code is 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
