"""Console parsing against captured real console logs; QEMU argv construction."""

from __future__ import annotations

from pathlib import Path

from lab.vm import console
from lab.vm.qemu_argv import Accel, MachineSpec, kernel_cmdline, qemu_argv, timeout_scale

LOGS = Path(__file__).resolve().parents[1] / "data" / "console"


def test_clean_boot_has_no_trouble_and_is_ready():
    text = (LOGS / "clean-boot.log").read_text()
    assert console.find_trouble(text) == []
    assert console.is_ready(text)
    assert console.init_failure(text) is None


def test_sysrq_panic_is_found_with_its_call_trace():
    text = (LOGS / "sysrq-panic.log").read_text()
    found = console.find_trouble(text)
    assert [t.kind for t in found] == ["panic"]
    assert "sysrq triggered crash" in found[0].line
    assert "write_sysrq_trigger" in found[0].excerpt  # the call trace came along
    assert "sysrq: Trigger a crash" in found[0].excerpt  # and the lines before it


def test_init_exit_panic_during_boot():
    text = (LOGS / "init-exit-panic.log").read_text()
    found = console.find_trouble(text)
    assert found and found[0].kind == "panic"
    assert "Attempted to kill init" in found[0].line
    assert not console.is_ready(text)


def test_each_kind_of_report_is_recognised():
    samples = {
        "warning": "[ 5.1] WARNING: CPU: 0 PID: 1 at fs/fuse/file.c:1600 fuse_x+0x1/0x2",
        "bug": "[ 5.1] BUG: kernel NULL pointer dereference, address: 0000000000000000",
        "oops": "[ 5.1] Oops: 0002 [#1] PREEMPT SMP",
        "gpf": "[ 5.1] general protection fault, probably for non-canonical address",
        "lockdep": "[ 5.1] WARNING: possible circular locking dependency detected",
        "hung-task": "[ 45.0] INFO: task fio:123 blocked for more than 30 seconds.",
        "kasan": "[ 5.1] BUG: KASAN: use-after-free in fuse_x+0x1/0x2",
    }
    for kind, line in samples.items():
        found = console.find_trouble(f"[ 1.0] boot\n{line}\n[ 9.9] after\n")
        assert found, kind
        # lockdep and KASAN reports start with WARNING:/BUG: lines; the kind
        # names the first pattern that matches, the excerpt carries the rest.
        assert line.split("] ", 1)[1] in found[0].line


def test_a_report_is_counted_once_and_ends_at_its_end_marker():
    text = ("[1] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x0/0x1\n[1] Call Trace:\n"
            "[1] ---[ end trace 0000000000000000 ]---\n[2] fine\n"
            "[3] INFO: task a:1 blocked for more than 30 seconds.\n")
    found = console.find_trouble(text)
    assert [t.kind for t in found] == ["warning", "hung-task"]
    assert "fine" not in found[0].excerpt.split("---[ end")[0]


def test_qemu_argv_is_private_and_local_only(tmp_path):
    spec = MachineSpec("baseline", tmp_path / "bzImage", tmp_path / "root.ext4", vcpus=2,
                       memory_mib=1024)
    argv = qemu_argv(spec, Accel("tcg", "test"), overlay=tmp_path / "o.qcow2",
                     qmp=tmp_path / "qmp.sock", console_log=tmp_path / "c.log", ssh_port=2222)
    joined = " ".join(argv)
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in joined  # never on all interfaces
    assert f"unix:{tmp_path / 'qmp.sock'},server=on,wait=off" in joined
    assert "-no-reboot" in argv and "-nodefaults" in argv
    assert argv[argv.index("-accel") + 1] == "tcg,thread=multi"
    assert str(tmp_path / "root.ext4") not in joined  # only the overlay is attached
    assert "panic=-1" in kernel_cmdline(spec) and "init=/sbin/lab-init" in kernel_cmdline(spec)
    kvm = qemu_argv(spec, Accel("kvm", "test"), overlay=tmp_path / "o", qmp=tmp_path / "q",
                    console_log=tmp_path / "c", ssh_port=1)
    assert kvm[kvm.index("-accel") + 1] == "kvm" and "host" in kvm


def test_timeouts_scale_with_tcg_and_debug():
    assert timeout_scale(Accel("kvm", ""), False) == 1.0
    assert timeout_scale(Accel("tcg", ""), False) > 1.0
    assert timeout_scale(Accel("tcg", ""), True) > timeout_scale(Accel("tcg", ""), False)


def test_specific_reports_win_over_their_bug_prefix():
    kinds = {
        "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [fio:99]": "soft-lockup",
        "BUG: sleeping function called from invalid context at fs/x.c:1": "might-sleep",
        "BUG: KASAN: slab-out-of-bounds in fuse_x+0x1/0x2": "kasan",
    }
    for line, kind in kinds.items():
        assert console.find_trouble(f"[1] {line}\n")[0].kind == kind


def test_kvm_runs_on_the_cpu_model_its_probe_found():
    from lab.vm.qemu_argv import Accel

    assert Accel("kvm", "probe", "kvm64").qemu_args() == ["-accel", "kvm", "-cpu", "kvm64"]
    assert Accel("kvm", "probe").qemu_args()[-1] == "host"
    assert Accel("tcg", "requested").qemu_args()[-1] == "max"
