#!/bin/sh
# meson install script: DIR/NEW becomes DIR/NAME unless DIR/NAME exists,
# so that a reinstall keeps the operator's configuration.
#   install-config.sh DIR NEW NAME
set -eu
dir=${DESTDIR:-}$1
if [ -e "$dir/$3" ]; then
  echo "Keeping $dir/$3 (the new default is $dir/$2)"
else
  cp -p "$dir/$2" "$dir/$3"
  echo "Installing $dir/$3"
fi
