"""kernel-lab: build, boot, test and benchmark Linux kernel patches in QEMU VMs."""

__version__ = "0.1.0"
