#!/bin/sh
# tools/check_layers.py must fail on an upward call and on a cycle: builds
# tiny objects named after src/ files (in $3) and checks what it says.
# usage: selftest.sh CC NM WORKDIR
set -u
cc=$1 nm=$2 work=$3
here=$(dirname "$0")
checker=$here/../../tools/check_layers.py
rm -rf "$work" && mkdir -p "$work/upward" "$work/cycle" "$work/clean" || exit 1
obj() { # obj DIR NAME SOURCE-TEXT
    printf '%s\n' "$3" > "$work/$1/$2.c" && "$cc" -c -o "$work/$1/$2.c.o" "$work/$1/$2.c" || exit 1
}
expect() { # expect DIR STATUS TEXT
    out=$(/usr/bin/python3 "$checker" "$nm" "$work/$1"/*.o)
    status=$?
    if [ "$status" -ne "$2" ] || ! printf '%s\n' "$out" | grep -q "$3"; then
        echo "$1: expected status $2 and \"$3\", got $status:"
        printf '%s\n' "$out"
        exit 1
    fi
    echo "$1: $out"
}
# the OS layer calling up into purge.c
obj upward os_posix 'void zzi_purge_up(void); void zzi_os_x(void); void zzi_os_x(void) { zzi_purge_up(); }'
obj upward purge 'void zzi_purge_up(void); void zzi_purge_up(void) {}'
expect upward 1 'upward: os_posix.c (os) uses zzi_purge_up of purge.c'
# two files of one layer calling each other
obj cycle pages 'void r(void); void p(void); void p(void) { r(); }'
obj cycle registry 'void r(void); void p(void); void r(void) { p(); }'
expect cycle 1 'cycle: pages.c -> registry.c -> pages.c'
# a downward call only
obj clean purge 'void zzi_os_y(void); void zzi_purge_z(void); void zzi_purge_z(void) { zzi_os_y(); }'
obj clean os_posix 'void zzi_os_y(void); void zzi_os_y(void) {}'
expect clean 0 'layered, no cycle'
