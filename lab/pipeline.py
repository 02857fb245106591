"""The one way through the stages, for every command and the test fixtures.

request -> variants -> builds + image + accelerator (`prepare`, a Prepared)
-> a booted VM with our guest programs deployed (`deployed`, `fleet`) -> the
caller's work. Each function is a plain call taking and returning typed
values; `lab test`, `lab run`, `lab bench`, `lab bisect`, `lab mutate`,
`lab boot/ssh` and the pytest fixtures all come through here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.config import LabConfig
from lab.errors import QemuCrashed
from lab.guest import workloads
from lab.host import cache
from lab.kernel import build, kselftest, kunit, variants
from lab.kernel.build import KernelBuild, Variant
from lab.kernel.series import Series, load_series
from lab.kernel.tree_files import TreeFiles
from lab.ui import Ui
from lab.vm.image import Image, build_image
from lab.vm.machine import Machine, probe_accel
from lab.vm.qemu_argv import Accel, MachineSpec
from lab.vm.ssh import Guest

log = logging.getLogger(__name__)
# Bump when the KVM probe changes, so an answer remembered this boot is asked again.
PROBE_VERSION = 2


def new_run_id(prefix: str = "") -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{prefix}{stamp}-{os.getpid()}"


@dataclass(frozen=True)
class VariantRequest:
    """What the user asked for on the command line."""

    names: tuple[str, ...] = ()
    debug: bool = False
    patches: tuple[Path, ...] = ()
    expect: tuple[str, ...] = ()
    kernel_tree: Path | None = None
    base: str | None = None  # with kernel_tree: an A/B of the user's git tree
    head: str | None = None
    strict: bool = False  # refuse patches that apply only with fuzz
    kconfig: str | None = None  # a make target (defconfig) or a .config file; None: tinyconfig
    fragments: tuple[Path, ...] = ()  # merged on top of the lab's own


def resolve_variants(cfg: LabConfig, req: VariantRequest, log_dir: Path) -> list[Variant]:
    base_config = variants.base_config(req.kconfig)  # checked before anything is unpacked
    extra = variants.extra_fragments(req.fragments)
    vs = variants.from_request(
        cfg, names=req.names, log_dir=log_dir, debug=req.debug, patches=req.patches,
        expect=req.expect, kernel_tree=req.kernel_tree, base=req.base, head=req.head,
        strict=req.strict)
    by_commit: dict[tuple[TreeFiles, tuple[Path, ...]], list[Path]] = {}
    return [dataclasses.replace(v, base_config=base_config,
                                fragments=(*v.fragments, *extra,
                                           *_tests_fragments(cfg, v, by_commit)))
            for v in vs]


def _tests_fragments(cfg: LabConfig, v: Variant,
                     by_commit: dict[tuple[TreeFiles, tuple[Path, ...]], list[Path]]
                     ) -> list[Path]:
    """What the tree's own tests need from the variant's kernel (checked now,
    against its source, before any build); worked out once per commit (a
    series' variants share one, and reading a tree's suites takes seconds)."""
    # The variant's own commit: a clone shared by an A/B's sides has either
    # side (or nothing) checked out.
    tree = TreeFiles(v.source.path, v.source.commit or build.source_commit(v.source.path))
    key = (tree, v.fragments)
    if key not in by_commit:
        by_commit[key] = _fragments_at(cfg, tree, v.fragments)
    return by_commit[key]


def _fragments_at(cfg: LabConfig, tree: TreeFiles, have: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    if cfg.tests.kselftests:
        kselftest.check_targets(tree, cfg.tests.kselftests, "--kselftest")
        frag = kselftest.fragment(tree, cfg.tests.kselftests, have, cfg.cache_root)
        found += [frag] if frag else []
    if cfg.tests.kunit:
        config_file = Path(cfg.tests.kunitconfig) if cfg.tests.kunitconfig else None
        found.append(kunit.fragment(tree, cfg.tests.kunit, config_file, cfg.cache_root))
    return found


def build_variants(
    cfg: LabConfig, vs: Sequence[Variant], log_dir: Path, ui: Ui
) -> list[KernelBuild]:
    builds = []
    for v in vs:
        with ui.step(f"kernel {v.build_name}", phase="build") as step:
            b = build.build(v, cfg.cache_root, log_dir, progress=step.update)
            step.done("cached" if b.cached else f"built in {b.seconds:.0f}s",
                      detail=f"{b.release} {b.bzimage}")
        builds.append(b)
    return builds


def image(cfg: LabConfig, log_dir: Path, ui: Ui) -> Image:
    with ui.step("root image", phase="image") as step:
        img = build_image(cfg.image_recipe, cfg.cache_root, log_dir, progress=step.update)
        step.done("cached" if img.cached else f"built in {img.seconds:.0f}s")
    return img


def accelerator(cfg: LabConfig, kernel_image: Path, log_dir: Path, ui: Ui) -> Accel:
    """The accelerator to use; an `auto` probe is remembered until the host reboots
    (whether nested KVM works does not change in between, and it costs seconds)."""
    memo = cfg.cache_root / "kvm-probe.json"
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    if cfg.vm.accel == "auto" and memo.is_file():
        seen = json.loads(memo.read_text())
        if seen.get("boot_id") == boot_id and seen.get("version") == PROBE_VERSION:
            accel = Accel(seen["name"], seen["reason"] + ", probed earlier this boot",
                          seen.get("cpu", ""))
            ui.note(f"accelerator: {accel.name} ({accel.reason})")
            return accel
    accel = probe_accel(cfg.vm.accel, kernel_image, log_dir)
    if cfg.vm.accel == "auto":
        cache.write_json(memo, {"boot_id": boot_id, "name": accel.name, "reason": accel.reason,
                                "cpu": accel.cpu, "version": PROBE_VERSION})
    ui.note(f"accelerator: {accel.name} ({accel.reason})")
    return accel


def machine_spec(cfg: LabConfig, kernel: KernelBuild, img: Image, name: str = "") -> MachineSpec:
    return MachineSpec(
        name=name or kernel.variant,
        kernel=kernel.boot_image,
        rootfs=img.rootfs,
        vcpus=cfg.vm.vcpus,
        memory_mib=cfg.vm.memory_mib,
        debug_kernel=kernel.debug,
        machine_type=cfg.vm.machine,
        cmdline_extra=kunit.cmdline(cfg.tests.kunit),
    )


@contextlib.contextmanager
def booted(
    cfg: LabConfig, kernel: KernelBuild, img: Image, accel: Accel, log_dir: Path, name: str = ""
) -> Iterator[tuple[Machine, Guest]]:
    """A running VM with an SSH session; both torn down on the way out."""
    spec = machine_spec(cfg, kernel, img, name)
    with contextlib.ExitStack() as stack:
        vm = _launch(stack, spec, accel, log_dir, cfg.vm.boot_timeout_s)
        guest = stack.enter_context(Guest(vm, img))
        try:
            yield vm, guest
        finally:
            # The guest's own poweroff first, while its SSH session is open.
            vm.shutdown(poweroff=guest.poweroff)


def _launch(stack: contextlib.ExitStack, spec: MachineSpec, accel: Accel, log_dir: Path,
            boot_timeout_s: float) -> Machine:
    """A started Machine, stopped with `stack`. A QEMU that crashed on its own
    during boot gets one more try (seen once under TCG: status -11 at 0.9 s);
    the crashed one's log is kept beside."""
    for attempt in (1, 2):
        vm = Machine(spec, accel, log_dir=log_dir, boot_timeout_s=boot_timeout_s)
        try:
            return stack.enter_context(vm)
        except QemuCrashed as exc:
            if attempt == 2:
                raise
            kept = vm.qemu_log.with_name(vm.qemu_log.name + ".crashed")
            with contextlib.suppress(OSError):
                vm.qemu_log.replace(kept)
            log.warning("%s; booting once more (its log: %s)", exc, kept)
    raise AssertionError("unreachable")


def series_of(cfg: LabConfig) -> Series:
    return load_series(cfg.series)


@dataclass(frozen=True)
class Prepared:
    """Everything built for a run: kernels by variant name, the image, the accelerator."""

    builds: dict[str, KernelBuild]
    image: Image
    accel: Accel
    inputs: dict
    # The kselftest targets built from each variant's source, by variant name.
    kselftests: dict[str, kselftest.KselftestBuild] = dataclasses.field(default_factory=dict)


def prepare(cfg: LabConfig, req: VariantRequest, out: Path, ui: Ui) -> Prepared:
    """Build every variant and the image, pick the accelerator."""
    with ui.phase("build"):  # resolving checks the patches (it may wait for the source)
        vs = resolve_variants(cfg, req, out)
    return prepare_variants(cfg, vs, out, ui)


def prepare_variants(cfg: LabConfig, vs: Sequence[Variant], out: Path, ui: Ui,
                     img: Image | None = None) -> Prepared:
    builds = build_variants(cfg, vs, out, ui)
    tests = kselftests(cfg, vs, out, ui) if cfg.tests.kselftests else {}
    img = img or image(cfg, out, ui)
    accel = accelerator(cfg, builds[0].bzimage, out, ui)
    inputs = {
        "source": vs[0].source.description,
        "variants": {b.variant: b.key for b in builds},
        "image": img.key,
        "guest_programs": workloads.sources_key(img.key)[:24],
        "vcpus": cfg.vm.vcpus,
        "memory_mib": cfg.vm.memory_mib,
        **series_of(cfg).report_inputs(),  # the cover letter's figures, for the report
    }
    if tests:
        inputs["kselftest"] = {name: t.key for name, t in tests.items()}
    return Prepared({b.variant: b for b in builds}, img, accel, inputs, tests)


def kselftests(cfg: LabConfig, vs: Sequence[Variant], log_dir: Path, ui: Ui
               ) -> dict[str, kselftest.KselftestBuild]:
    found = {}
    targets = cfg.tests.kselftests
    for v in vs:
        with ui.step(f"kselftest {','.join(targets)} for {v.build_name}", phase="build") as step:
            found[v.name] = kselftest.build(v, targets, cfg.cache_root, log_dir)
            done = found[v.name]
            step.done("cached" if done.cached else f"built in {done.seconds:.0f}s",
                      detail=str(done.path))
    return found


@contextlib.contextmanager
def deployed(cfg: LabConfig, p: Prepared, name: str, out: Path, ui: Ui
             ) -> Iterator[tuple[Machine, Guest]]:
    """One variant booted, with our guest programs deployed."""
    with contextlib.ExitStack() as stack:
        with ui.step(f"boot {name}") as step:
            with ui.phase("boot"):
                vm, guest = stack.enter_context(
                    booted(cfg, p.builds[name], p.image, p.accel, out))
            with ui.phase("deploy"):
                workloads.deploy(guest, cfg.cache_root)
            times = vm.boot_times
            if times is not None:
                ui.phases.boots.append({"variant": name, **times.to_dict()})
            step.done(f"up in {vm.boot_seconds:.1f}s", detail=f"{p.builds[name].release}; "
                      + (times.describe() if times else ""))
        yield vm, guest


@contextlib.contextmanager
def fleet(cfg: LabConfig, p: Prepared, names: Sequence[str], out: Path, ui: Ui
          ) -> Iterator[dict[str, tuple[Machine, Guest]]]:
    """Boot the named variants side by side, with our guest programs deployed."""
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(deployed(cfg, p, name, out, ui)) for name in names}
