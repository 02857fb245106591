#!/bin/sh
# What `lab test --script` promises a script: its variable, a mounted labfs, a fresh cwd.
echo "TAP version 13"
echo "1..4"
[ "$LAB_VARIANT" = patched ] && echo "ok 1 - LAB_VARIANT" || echo "not ok 1 - LAB_VARIANT is '$LAB_VARIANT'"
mountpoint -q "$LAB_FUSE_MOUNT" && grep -q " $LAB_FUSE_MOUNT fuse" /proc/mounts \
	&& echo "ok 2 - LAB_FUSE_MOUNT" || echo "not ok 2 - LAB_FUSE_MOUNT $LAB_FUSE_MOUNT"
case ",$LAB_FEATURES," in
*,parallel-direct-writes,*) echo "ok 3 - LAB_FEATURES" ;;
*) echo "not ok 3 - LAB_FEATURES '$LAB_FEATURES'" ;;
esac
[ -z "$(ls -A .)" ] && echo "ok 4 - empty working directory" || echo "not ok 4 - cwd not empty"
