#!/usr/bin/env bash
# Draws the tray icons (icons/tray-*.png), one per agent state, with ImageMagick.
#
# Each state has its own SHAPE as well as its own colour, so the icon reads on a monochrome panel
# and for colour-blind users: filled disc = connected, dashed ring = connecting, open ring with an
# arrow = reconnecting, slashed circle = signed out, hourglass = waiting for approval, two bars =
# paused, triangle with "!" = error. 64x64 RGBA (PNG32), metadata stripped (no dates) so that
# running this again produces the same bytes. The app embeds the files at compile time
# (src-tauri/src/tray/icon.rs); commit them after running this.
#
# Usage: scripts/make-tray-icons.sh [output-dir]   (default: icons/ at the repository root)
set -euo pipefail
out=${1:-"$(cd "$(dirname "$0")/.." && pwd)/icons"}
command -v convert >/dev/null || { echo "make-tray-icons: needs ImageMagick's convert (apt-get install imagemagick)" >&2; exit 1; }
mkdir -p "$out"

# png NAME DRAW-ARGS...: a transparent 64x64 canvas, the drawing, written as RGBA with no dates.
png() {
  local name=$1; shift
  convert -size 64x64 xc:none "$@" -strip -define png:exclude-chunks=date,time,tIME "PNG32:$out/$name"
}

# connected: a filled green disc
png tray-connected.png -fill '#2e9d4a' -stroke '#14522a' -strokewidth 3 -draw "circle 32,32 32,6"
# connecting: a dashed ring
png tray-connecting.png -fill none -stroke '#d08a00' -strokewidth 8 \
  -draw "stroke-dasharray 22 16 circle 32,32 32,8"
# reconnecting: an open ring with an arrow head (going round again)
png tray-reconnecting.png -fill none -stroke '#d08a00' -strokewidth 8 -draw "ellipse 32,32 24,24 0,290" \
  -stroke none -fill '#d08a00' -draw "polygon 30,0 50,10 30,20"
# signed out: a hollow grey circle with a slash
png tray-signed-out.png -fill none -stroke '#7a7a7a' -strokewidth 7 -draw "circle 32,32 32,7" \
  -draw "line 14,50 50,14"
# waiting for approval: an hourglass
png tray-waiting.png -fill '#2f6fce' -stroke '#163a70' -strokewidth 2 \
  -draw "polygon 12,4 52,4 34,32 52,60 12,60 30,32"
# paused: two bars
png tray-paused.png -fill '#5c6bc0' -stroke '#2c3570' -strokewidth 2 \
  -draw "rectangle 12,8 26,56" -draw "rectangle 38,8 52,56"
# error: a red triangle with a white "!"
png tray-error.png -fill '#d32f2f' -stroke '#7a1010' -strokewidth 2 -draw "polygon 32,3 62,59 2,59" \
  -stroke none -fill white -draw "rectangle 29,20 35,42" -draw "rectangle 29,47 35,53"
