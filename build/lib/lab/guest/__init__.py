"""What runs inside the guest (labfs, labprobe, labfsx) and the typed records it prints."""
