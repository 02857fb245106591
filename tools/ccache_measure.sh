#!/usr/bin/env bash
# Does ccache pay for the lab's kernel builds? The same part of one kernel
# (the lab's own .config; `make prepare fs/ mm/ kernel/`), built three times
# into the same fixed folder, deleted before each:
#   plain        no ccache (what the lab does with no build folder)
#   ccache-cold  through ccache with an empty ccache dir (its overhead)
#   ccache-warm  the build folder deleted, ccache kept (a CI cache that kept
#                ccache's dir instead of the lab's build folders)
# Usage: tools/ccache_measure.sh KERNEL_SOURCE CONFIG   (needs ccache; about 6 min on 2 cores)
set -euo pipefail
SRC=${1:?kernel source}
CONFIG=${2:?a .config the lab built with}
# A folder of its own (the build folder keeps one path across the three runs:
# kbuild records it); kept with its logs if a build fails.
WORK=$(mktemp -d /tmp/ccache-measure.XXXXXX)
O=$WORK/o
export CCACHE_DIR=$WORK/ccache KBUILD_BUILD_USER=kernel-lab \
	KBUILD_BUILD_HOST=kernel-lab KBUILD_BUILD_TIMESTAMP=kernel-lab
run() {  # name, make args...
	local name=$1 t0 t1; shift
	rm -rf "$O"; mkdir -p "$O"; cp "$CONFIG" "$O/.config"
	t0=$(date +%s.%N)
	make -s -C "$SRC" O="$O" -j2 "$@" olddefconfig >"$WORK/$name.log" 2>&1
	make -s -C "$SRC" O="$O" -j2 "$@" prepare fs/ mm/ kernel/ >>"$WORK/$name.log" 2>&1
	t1=$(date +%s.%N)
	printf '%-12s %6.1f s  load %s  build folder %s\n' "$name" "$(echo "$t1 - $t0" | bc)" \
		"$(cut -d' ' -f1-3 /proc/loadavg)" "$(du -sh "$O" | cut -f1)"
}
run plain
run ccache-cold CC="ccache gcc"
run ccache-warm CC="ccache gcc"
ccache -s | grep -E "Hits|Misses|Cache size" || true
echo "ccache dir: $(du -sh "$CCACHE_DIR" | cut -f1)"
rm -rf "$WORK"
