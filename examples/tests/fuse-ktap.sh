#!/bin/sh
# A user's own test, run in each variant's guest by
#   lab test --script examples/tests/fuse-ktap.sh
# It writes through the lab's FUSE mount ($LAB_FUSE_MOUNT: labfs with direct
# I/O and parallel direct writes), checks the data, and reports in KTAP on
# stdout; each KTAP test is a sub-result in the lab's matrix, report, JSON and
# JUnit. The exit status is the script's own verdict.
set -u
dir="$LAB_FUSE_MOUNT/example"
ref=$(mktemp)
n=0
status=0

result() {  # result EXIT-CODE NAME [DIRECTIVE]
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $n $2${3:+ # $3}"
	else
		echo "not ok $n $2"
		status=1
	fi
}

echo "KTAP version 1"
echo "# variant ${LAB_VARIANT} ($(uname -r)), claims: ${LAB_FEATURES:-nothing}"
echo "1..5"
mkdir -p "$dir"
head -c 1048576 /dev/urandom > "$ref"

dd if="$ref" of="$dir/seq" bs=64k oflag=direct status=none
result $? write-direct
cmp -s "$ref" "$dir/seq"
result $? read-back

# Eight writers at once on disjoint 128 KiB ranges of one pre-sized file:
# the non-extending direct writes the patch lets run in parallel.
truncate -s 1M "$dir/shared"
for i in 0 1 2 3 4 5 6 7; do
	dd if="$ref" of="$dir/shared" bs=128k skip=$i seek=$i count=1 conv=notrunc \
		oflag=direct status=none &
done
wait
cmp -s "$ref" "$dir/shared"
result $? parallel-disjoint-writes

# The server's backing folder holds exactly what was written.
cmp -s "$ref" "$LAB_FUSE_BACKING/example/shared"
result $? backing-store

if fallocate -l 2M "$dir/shared" 2>/dev/null; then
	[ "$(stat -c %s "$dir/shared")" -eq 2097152 ]
	result $? fallocate
else
	result 0 fallocate "SKIP the server does not implement fallocate"
fi

rm -rf "$dir" "$ref"
exit $status
