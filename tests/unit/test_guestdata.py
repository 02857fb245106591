"""Typed records of what our guest programs print (labfs counters, labprobe results)."""

from __future__ import annotations

import json

import pytest

from lab.errors import ParseError
from lab.guest import records

# The shape labfs writes (lab/guest/programs/labfs.c, stats_dump).
LABFS = {
    "options": {"direct_io": True, "parallel_direct_writes": True, "null_writes": False,
                "delay_write_us": 400000, "delay_setattr_us": 0, "short_write": 0,
                "fail_write_every": 0, "fail_write_errno": 0, "threads": 64},
    "totals": {"writes": 8, "bytes": 524288, "max_inflight": 8, "setattrs": 1,
               "errors_injected": 0},
    "files": {"/f": {"writes": 8, "bytes": 524288, "max_inflight": 8, "extending_writes": 0,
                     "max_extending_overlap": 0, "setattrs": 1, "errors_injected": 0,
                     "short_writes": 0}},
}


def test_server_counters_parse_and_unknown_files_have_none():
    stats = records.parse_server_stats(json.dumps(LABFS))
    assert stats.file("f").max_inflight == 8
    assert stats.file("never-written").writes == 0


def test_a_renamed_counter_is_an_error_naming_it():
    data = json.loads(json.dumps(LABFS))
    data["files"]["/f"]["inflight_max"] = data["files"]["/f"].pop("max_inflight")
    with pytest.raises(ParseError, match="'max_inflight' is missing"):
        records.parse_server_stats(json.dumps(data))
    data["files"]["/f"]["max_inflight"] = "8"
    with pytest.raises(ParseError, match="not int"):
        records.parse_server_stats(json.dumps(data))


def test_probe_results_and_loops():
    pwrite = {"cmd": "pwrite", "writers": [
        {"writer": 0, "offset": 0, "len": 65536, "ret": 65536, "errno": 0, "errno_name": None,
         "open_failed": False, "start_ms": 0.1, "end_ms": 400.2},
        {"writer": 1, "offset": 65536, "len": 65536, "ret": -1, "errno": 28,
         "errno_name": "ENOSPC", "open_failed": False, "start_ms": 0.1, "end_ms": 800.0}],
        "final_size": 65536, "bad_blocks": [], "verify_ok": True}
    res = records.parse_probe(pwrite, "labprobe pwrite")
    assert [w.index for w in res.wrong_returns(65536)] == [1]
    assert res.writers[1].errno_name == "ENOSPC"
    loop = {"cmd": "write-until-error", "writers": [
        {"writer": 0, "region_offset": 0, "writes_ok": 3, "stop": "error", "last_ret": -1,
         "first_errno": 107, "first_errno_name": "ENOTCONN", "open_failed": False,
         "start_ms": 0.0, "end_ms": 1.0, "elapsed_ms": 1.0}], "final_size": None}
    res = records.parse_probe(loop, "labprobe write-until-error")
    assert res.writers[0].errno_name == "ENOTCONN" and res.final_size is None


def test_not_json_is_a_parse_error_with_the_text():
    with pytest.raises(ParseError, match="labfs counters: not JSON"):
        records.parse_server_stats("labfs: cannot open\n")


def test_mixed_names_what_failed_before_the_reads():
    from lab.guest.records import parse_mixed

    read = {"mismatch_examples": [], "mismatched_blocks": 0, "errno": 0, "errno_name": None,
            "ok": True}
    record = {"cmd": "mixed", "blocks": 16, "blocks_cached_before_direct_writes": 16,
              "buffered_write_errno": 0, "buffered_write_errno_name": None,
              "fsync_errno": 0, "fsync_errno_name": None,
              "direct_open_errno": 0, "direct_open_errno_name": None,
              "direct_write_errno": 0, "direct_write_errno_name": None,
              "buffered_read": read, "direct_read": read, "ok": True}
    good = parse_mixed(record)
    assert good.ok and (good.mismatched_blocks, good.cached_blocks, good.errors) == (0, 16, ())
    refused = parse_mixed({**record, "ok": False, "blocks_cached_before_direct_writes": 0,
                           "direct_open_errno": 22, "direct_open_errno_name": "EINVAL",
                           "direct_read": None})
    assert not refused.ok and refused.errors == ("O_DIRECT open: EINVAL",)
