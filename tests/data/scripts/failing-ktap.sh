#!/bin/sh
# Nested KTAP with one failure and one skip; exits 1 like a failing kselftest.
cat <<'KTAP'
KTAP version 1
1..2
    KTAP version 1
    # Subtest: io
    1..3
    ok 1 read
    not ok 2 write
    ok 3 mmap # SKIP no mmap on direct-io files
not ok 1 io
ok 2 cleanup
KTAP
echo "write: short write at 4096" >&2
exit 1
