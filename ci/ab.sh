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
set -uo pipefail
: "${LAB:?LAB: kernel-lab checkout}" "${LAB_BASE:?LAB_BASE: the base revision}"
results=${LAB_RESULTS:-results/ab}
args=(test --kernel-tree . --base "$LAB_BASE" --accel "${LAB_ACCEL:-kvm}" --results "$results")
[ -n "${LAB_HEAD:-}" ] && args+=(--head "$LAB_HEAD")
[ -n "${LAB_EXPECT:-}" ] && args+=(--expect "$LAB_EXPECT")
[ -n "${LAB_KCONFIG:-}" ] && args+=(--kconfig "$LAB_KCONFIG")
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
