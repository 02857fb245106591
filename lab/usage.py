"""What `lab --help` tells a user: what the lab does, the common commands, examples."""

DESCRIPTION = """\
Validate a kernel patch end to end: build the kernel with and without it,
boot each in a QEMU VM (KVM when a probe boot proves it works, else TCG), run
the regression and concurrency suite against the real kernels, benchmark
patched against unpatched with fio over a FUSE server, and write a report
(report.md, report.html, junit.xml, results.json, reproduce.sh) to
results/<run-id>/. The first case is FUSE's parallel direct writes
(FOPEN_PARALLEL_DIRECT_WRITES, fs/fuse/file.c)."""

EPILOG = """\
common commands:
  lab run                  the main job: build, suite on every variant, benchmark, report
  lab test                 the suite only (a case x variant matrix; -k CASE for some)
  lab bench                the fio benchmark only
  lab doctor               check this host and say what to install
  lab ssh VARIANT -- CMD   boot a variant, run CMD in it, shut it down

examples:
  lab run                                        baseline vs patched, the default experiment
  lab test --variant baseline,v1,v2,patched      versions of the series (series.toml)
  lab test --patch my-fix.patch --expect parallel-direct-writes
  lab bench --job-file examples/ssf.fio --jobs 1,2,4,8 --mode latency
  lab bisect --series patches/fuse-parallel-dio --test truncate-race --first-good
  lab compare results/RUN_A results/RUN_B        two runs' benchmarks side by side
  lab report --merge results/shard-* --out results/merged

variants: baseline, the series' versions (v1..vN), patched (the newest), user (--patch FILE),
tree (--kernel-tree PATH). Settings: lab.toml (--config). Cache:
${LAB_CACHE:-~/.cache/kernel-lab}, shared by concurrent runs.
exit codes: 0 ok, 1 a check failed, 2 bad input, 3 infrastructure failure,
130 interrupted. `lab COMMAND --help` lists a command's options."""
