"""User-facing failures: one line on stderr and exit status 2, never a traceback."""

import sys
from collections.abc import Callable


class UserError(ValueError):
    """A mistake the user can fix: bad input, bad configuration, an unusable path."""


def run_cli(main: Callable[[], int]) -> int:
    """Run a command's body; a UserError (or any ValueError naming the input) becomes
    ``error: …`` on stderr and exit status 2."""
    try:
        return main()
    except (UserError, ValueError, FileNotFoundError, PermissionError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # a failure during the run (e.g. a worker's error), not a user mistake
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
