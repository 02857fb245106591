#!/bin/sh
# A test that fails one sub-test on the patched kernel only: a regression.
echo "TAP version 13"
echo "1..2"
echo "ok 1 stable"
if [ "$LAB_VARIANT" = patched ]; then
	echo "not ok 2 changed-by-the-patch"
	exit 1
fi
echo "ok 2 changed-by-the-patch"
