"""errors.report: A1111 prints an extension's exception and carries on."""
import sys
import traceback


def report(message, *, exc_info=False):
    print(f"*** {message}", file=sys.stderr)
    if exc_info:
        traceback.print_exc()
