"""What the reference checks (triton_check.py, crop_check.py, verify_check.py) share: one line per check, the first
failure ends the run naming it, and the command line run as a subprocess."""
import os
import subprocess
import sys

NAME = os.path.splitext(os.path.basename(sys.argv[0]))[0]


def fail(message):
    print(f"{NAME}: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)
    print(f"ok: {message}")


def run_inception(executable, *arguments, one_thread=False):
    """`inception ARGUMENTS` (with --threads 1 when `one_thread`: the test suite runs beside it on the same cores);
    its standard output, or the run fails with its error."""
    threads = ["--threads", "1"] if one_thread else []
    result = subprocess.run([executable, *arguments, *threads], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"inception {' '.join(arguments)}: {result.stderr.strip()}")
    return result.stdout
