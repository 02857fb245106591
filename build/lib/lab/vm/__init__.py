"""Virtual machines: the root image, QEMU and its console, SSH into the guest."""
