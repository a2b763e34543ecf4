#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check_layers.sh - the layers of src/ include downward only (DESIGN.md):
#   core -> transport -> ring -> mem -> base
# A file may include its own layer's headers, lower layers' and the public
# headers (include/); an #include of a higher layer fails, and every such
# line is listed; so is a line of src/core/ that names a transport. CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
rank() {
  case $1 in
    base) echo 0 ;; mem) echo 1 ;; ring) echo 2 ;; transport) echo 3 ;; core) echo 4 ;; *) echo -1 ;;
  esac
}
bad=0
while IFS= read -r f; do
  layer=${f#src/}
  layer=${layer%%/*}
  mine=$(rank "$layer")
  [ "$mine" -ge 0 ] || { echo "check_layers: $f is in no layer (src/$layer/)" >&2; bad=1; continue; }
  while IFS= read -r line; do
    inc=$(sed -n 's/^#include "\([^"]*\)".*/\1/p' <<<"$line")
    [ -n "$inc" ] || continue
    # the layer of the file the include names, if it is one of src/'s
    target=$(realpath -m --relative-to=src "$(dirname "$f")/$inc")
    if [ -e "src/$target" ]; then
      their=$(rank "${target%%/*}")
    else
      their=$mine # psyne.h, psyne/inline.h: the public headers (include/)
    fi
    if [ "$their" -gt "$mine" ]; then
      echo "check_layers: $f ($layer) includes $inc, a higher layer" >&2
      bad=1
    fi
  done < <(grep '^#include "' "$f")
done < <(git ls-files 'src/*.c' 'src/*.h')
# core/ reaches transports only through their tables (transport/transport.h):
# no transport's functions, types or headers by name.
if grep -nE 'psy_(tcp|ipc|memory|dyn)_|transport/(tcp/|ipc|memory|dynamic)' src/core/*.c src/core/*.h; then
  echo "check_layers: src/core/ names a transport (above); go through struct psy_transport" >&2
  bad=1
fi
[ $bad -eq 0 ] && echo "check_layers: every include of src/ points down (core -> transport -> ring -> mem -> base)"
exit $bad
