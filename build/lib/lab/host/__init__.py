"""The host: processes (spawn, teardown, the reaper), the cache and the tools the lab needs."""
