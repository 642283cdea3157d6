#!/bin/sh
# public_api_only.sh NM OBJECT... - fails when libzeroize-shield's object
# files use a libzeroize-internal symbol (zzi_*): the shield is a layer on
# libzeroize's public API (zeroize.h) alone.
nm=$1; shift
used=$("$nm" "$@" | awk '$1 == "U" && $2 ~ /^zzi_/ {print $2}' | sort -u)
if [ -n "$used" ]; then
    echo "libzeroize-shield uses libzeroize internals: $used"
    exit 1
fi
[ "$#" -ge 3 ] || { echo "expected the shield's object files, got: $*"; exit 1; }
echo "libzeroize-shield uses libzeroize's public API only ($# object files)"
