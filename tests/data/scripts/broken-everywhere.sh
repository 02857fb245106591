#!/bin/sh
# A test that fails the same sub-test on every kernel: pre-existing, not the patch's.
echo "TAP version 13"
echo "1..2"
echo "ok 1 stable"
echo "not ok 2 needs-hardware-we-lack"
exit 1
