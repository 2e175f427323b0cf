#!/usr/bin/env bash
# The library never writes to standard output or standard error and never ends the process: a server or an app
# embeds it. Its lines go to swift-log (`Diagnostics`), its failures are thrown; only the command line
# (InceptionCommands, InceptionCLI) prints and exits. Fails naming each line that breaks this, in Swift and C.
# (An allocation that fails traps, in C's abort() as in Swift's own allocator: that is not the library's choice.)
set -euo pipefail
cd "$(dirname "$0")/.."
pattern='FileHandle\.standard(Error|Output)|(^|[^A-Za-z_.])(print|exit|_exit|fputs|fprintf|printf|puts|perror)\('
found=$(grep -rnE "$pattern" Sources --include='*.swift' --include='*.c' --include='*.h' \
          | grep -vE '^Sources/(InceptionCommands|InceptionCLI)/' | grep -vE '/Generated/' \
          | grep -vE ':[0-9]+:\s*(//|/?\*)' || true)
if [ -n "$found" ]; then
  echo "$found"
  echo "quiet library: the lines above write or exit outside the command line (use Diagnostics, or throw)"
  exit 1
fi
echo "quiet library: no module but the command line's writes to stdout or stderr or ends the process"
