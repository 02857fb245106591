#!/bin/sh
# Hangs on purpose, in the kernel. Two writers open the file while the FUSE
# server still answers; then the server is stopped. The first writer waits for
# its WRITE reply holding the inode lock; the second, extending the file, waits
# for that lock in D state. The lab must kill the script at its limit and
# report the blocked tasks' stacks. (Only the writers hold the file open: with
# the server stopped, any close of it would wait for a FLUSH reply instead.)
# Each step waits for the kernel state it needs instead of sleeping. Each
# writer has its own FIFOs: with one shared "opened" FIFO, a reader could open
# it while the first writer still held it and read EOF instead of the second
# writer's line, which then blocked forever before its dd (seen under TCG).
f="$LAB_FUSE_MOUNT/f"
echo "KTAP version 1"
echo "1..1"
truncate -s 1M "$f"
mkfifo opened1 opened2 go1 go2
writer() {  # writer N BLOCK: open the file now, write BLOCK when told on goN
	exec 3<>"$f"
	echo > "opened$1"
	read -r _ < "go$1"
	exec dd if=/dev/zero bs=64k count=1 seek="$2" conv=notrunc status=none >&3
}
until_state() {  # until_state PID PATTERN FILE: poll /proc/PID/FILE, 200 tries at most
	n=0
	until grep -q "$2" "/proc/$1/$3" 2>/dev/null || [ $n -ge 200 ]; do
		n=$((n + 1)); sleep 0.05
	done
}
writer 1 0 &
w1=$!
read -r _ < opened1
writer 2 32 &
w2=$!
read -r _ < opened2
kill -STOP "$(pgrep -x labfs)"
echo > go1
until_state "$w1" request_wait_answer wchan  # its WRITE sent, never answered
echo > go2
until_state "$w2" '^[0-9]* (dd) D' stat      # waiting for the inode lock
echo "# both writers are stuck"
wait
echo "ok 1 never-reached"
