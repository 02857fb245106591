#!/bin/sh
# Puts a kernel WARNING into the kernel's log through /dev/kmsg, as a driver's
# WARN_ON() would: the lab must fail the script with the report, although the
# script itself passes.
echo "KTAP version 1"
echo "1..1"
echo "<4>WARNING: CPU: 0 PID: $$ at fs/fuse/file.c:1 lab_script_test+0x0/0x10" > /dev/kmsg
echo "ok 1 wrote-a-warning"
