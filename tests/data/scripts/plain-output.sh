#!/bin/sh
# Not KTAP or TAP at all: the exit status alone decides.
echo "copied 3 files"
echo "ok"
exit 0
