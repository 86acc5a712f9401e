"""Console entry point of ``nachos-tf`` (setup.py ``console_scripts``), outside the ``nachos_tf`` package on purpose.

``import nachos_tf`` imports TensorFlow, which takes seconds. A Ctrl-C in that time raises KeyboardInterrupt
inside the package's ``__init__``, before any line of :mod:`nachos_tf.cli` runs, so only a module outside the
package can turn it into the command line's usual answer: the line "interrupted" and exit status 130, not a
50-line traceback. Everything else is :func:`nachos_tf.cli.main`.
"""
from __future__ import annotations

import sys


def _interrupted() -> "None":
    try:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    raise SystemExit(130)


def main() -> None:
    """Run ``nachos-tf``: import the CLI (and TensorFlow) with Ctrl-C handled, then hand over to click.

    Raises:
        SystemExit: always, with the command's exit status (130 after Ctrl-C).
    """
    try:
        from nachos_tf.cli import main as cli_main
    except KeyboardInterrupt:
        _interrupted()
    try:
        cli_main()
    except KeyboardInterrupt:      # between click's own handlers (they catch it inside commands)
        _interrupted()


if __name__ == "__main__":
    main()
