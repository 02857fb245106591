#!/bin/sh
# Hangs on purpose, in the kernel. Two writers open the file while the FUSE
# server still answers; then the server is stopped. The first writer waits for
# its WRITE reply holding the inode lock; the second, extending the file, waits
# for that lock in D state. The lab must kill the script at its limit and
# report the blocked tasks' stacks. (Only the writers hold the file open: with
# the server stopped, any close of it would wait for a FLUSH reply instead.)
f="$LAB_FUSE_MOUNT/f"
echo "KTAP version 1"
echo "1..1"
truncate -s 1M "$f"
mkfifo opened go1 go2
writer() {  # writer GO-FIFO BLOCK: open the file now, write BLOCK when told
	exec 3<>"$f"
	echo > opened
	read -r _ < "$1"
	exec dd if=/dev/zero bs=64k count=1 seek="$2" conv=notrunc status=none >&3
}
writer go1 0 &
read -r _ < opened
writer go2 32 &
read -r _ < opened
kill -STOP "$(pgrep -x labfs)"
echo > go1
sleep 1
echo > go2
wait
echo "ok 1 never-reached"
