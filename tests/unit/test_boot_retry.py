"""A QEMU that dies of its own signal during boot gets exactly one more boot;
every other boot failure (and a second crash) goes up unchanged."""
import contextlib
from pathlib import Path

import pytest

from lab import pipeline
from lab.errors import BootError, QemuCrashed


class FakeMachine:
    outcomes: list = []  # what each successive launch does
    launches = 0
    exits = 0

    def __init__(self, spec, accel, *, log_dir: Path, boot_timeout_s: float) -> None:
        self.qemu_log = log_dir / f"{spec}.qemu.log"

    def __enter__(self):
        FakeMachine.launches += 1
        self.qemu_log.write_text(f"launch {FakeMachine.launches}\n")
        outcome = FakeMachine.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return self

    def __exit__(self, *exc) -> None:
        FakeMachine.exits += 1


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(pipeline, "Machine", FakeMachine)
    FakeMachine.launches = FakeMachine.exits = 0
    return FakeMachine


def test_a_qemu_crash_during_boot_is_retried_once_and_its_log_kept(fake, tmp_path):
    fake.outcomes = [QemuCrashed("v: QEMU exited with status -11 during boot"), None]
    with contextlib.ExitStack() as stack:
        vm = pipeline._launch(stack, "v", None, tmp_path, 60)
        assert fake.launches == 2 and vm.qemu_log.read_text() == "launch 2\n"
        assert fake.exits == 0  # entered once, left running for the caller
    assert fake.exits == 1
    assert (tmp_path / "v.qemu.log.crashed").read_text() == "launch 1\n"


def test_a_second_crash_is_the_answer(fake, tmp_path):
    fake.outcomes = [QemuCrashed("first"), QemuCrashed("second")]
    with pytest.raises(QemuCrashed, match="second"):
        pipeline._launch(contextlib.ExitStack(), "v", None, tmp_path, 60)
    assert fake.launches == 2


def test_other_boot_failures_are_not_retried(fake, tmp_path):
    fake.outcomes = [BootError("v: no ready marker within 60s")]
    with pytest.raises(BootError, match="ready marker"):
        pipeline._launch(contextlib.ExitStack(), "v", None, tmp_path, 60)
    assert fake.launches == 1
