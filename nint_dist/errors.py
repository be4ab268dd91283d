"""User-facing failures. A mistake the user can fix (``UserError``) is one line on stderr and
exit status 2; a failed run is one line and exit status 1; anything else is a bug of ours: one
line and exit status 1 as well, with its traceback under ``-v``, never dressed up as the user's
mistake."""

import sys
import traceback
from collections.abc import Callable


class UserError(ValueError):
    """A mistake the user can fix: bad input, bad configuration, an unusable path."""


class RunFailed(RuntimeError):
    """The run started and then failed (a diverged model, a lost worker, damaged checkpoints):
    one line, exit status 1, what was written so far kept."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def run_cli(main: Callable[[], int], verbose: bool = False) -> int:
    """Run a command's body: ``UserError`` → ``error: …`` and exit 2; ``RuntimeError`` (a failure
    during the run) → ``error: …`` and exit 1; any other exception → ``error: internal error …``
    and exit 1, with the traceback when ``verbose``."""
    try:
        return main()
    except UserError as e:
        print(f"error: {_first_line(e)}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # a failure during the run (e.g. a worker's error), not a user mistake
        if verbose:
            traceback.print_exc()
        print(f"error: {_first_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if verbose:
            traceback.print_exc()
        hint = "" if verbose else " (run with -v for the traceback)"
        print(f"error: internal error, {type(e).__name__}: {_first_line(e)}{hint}", file=sys.stderr)
        return 1
