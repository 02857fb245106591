"""The lab's jobs behind the CLI: run/test, soak, selftime, doctor, keys, reproduce."""
