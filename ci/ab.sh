#!/usr/bin/env bash
# One A/B of the kernel tree in the current folder, for any CI service: the
# GitHub action (ci/github/ab) and the GitLab component (templates/kernel-ab.yml)
# both call it. Inputs come as environment variables, never spliced into code:
#   LAB             kernel-lab's checkout (set up with `make setup-ci`)
#   LAB_BASE        the revision to compare the head with (required)
#   LAB_HEAD        the head revision (default: the checked-out working tree)
#   LAB_EXPECT LAB_KCONFIG LAB_CASES LAB_SCRIPT LAB_KSELFTEST LAB_KUNIT
#                   --expect, --kconfig, -k, --script, --kselftest, --kunit
#   LAB_ACCEL       kvm (default), auto or tcg
#   LAB_RESULTS     the results folder (default results/ab)
#   LAB_SUMMARY     a Markdown file the verdict is appended to (optional)
# Exit status: the lab's (0 pass, 1 a check failed, 2 bad input, 3 the lab broke).
#
# `ab.sh --cache-key` prints, in $GITHUB_OUTPUT's format, what caches this
# A/B's builds (`lab build --print-cache-key`): the key, its two fall-backs,
# the image's key, and the folders of each (`folders`, `image-folders`).
set -uo pipefail
: "${LAB:?LAB: kernel-lab checkout}" "${LAB_BASE:?LAB_BASE: the base revision}"
results=${LAB_RESULTS:-results/ab}
side=(--kernel-tree . --base "$LAB_BASE")
[ -n "${LAB_HEAD:-}" ] && side+=(--head "$LAB_HEAD")
[ -n "${LAB_KCONFIG:-}" ] && side+=(--kconfig "$LAB_KCONFIG")
if [ "${1:-}" = --cache-key ]; then
	if ! key=$("$LAB/.venv/bin/lab" build --print-cache-key "${side[@]}"); then
		exit 2
	fi
	printf '%s\n' "$key" | grep -v '^\(image-\)\?folder='
	# actions/cache takes its folders as one multi-line value.
	for kind in folder image-folder; do
		printf '%ss<<EOF_FOLDERS\n' "$kind"
		printf '%s\n' "$key" | sed -n "s/^$kind=//p"
		printf 'EOF_FOLDERS\n'
	done
	exit 0
fi
args=(test "${side[@]}" --accel "${LAB_ACCEL:-kvm}" --results "$results")
[ -n "${LAB_EXPECT:-}" ] && args+=(--expect "$LAB_EXPECT")
[ -n "${LAB_CASES:-}" ] && args+=(-k "$LAB_CASES")
[ -n "${LAB_SCRIPT:-}" ] && args+=(--script "$LAB_SCRIPT")
[ -n "${LAB_KSELFTEST:-}" ] && args+=(--kselftest "$LAB_KSELFTEST")
[ -n "${LAB_KUNIT:-}" ] && args+=(--kunit "$LAB_KUNIT")
status=0
"$LAB/.venv/bin/lab" "${args[@]}" || status=$?
if [ -n "${LAB_SUMMARY:-}" ]; then
	python3 "$LAB/ci/ab_summary.py" --status "$status" "$results" >> "$LAB_SUMMARY"
fi
exit "$status"
