"""Capture one console log per kernel report kind from our own kernels (LKDTM).

Run by hand when the patterns or the kernels change, from the repository root:
    .venv/bin/python tests/kernel/capture_console.py [TYPE...]
It writes tests/data/console/lkdtm-<type>.log, which the pure parser test
(tests/unit/test_console_reports.py) reads.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from lab import config, pipeline
from lab.suite import checks
from lab.ui import Ui

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lkdtm import lkdtm_variant, provoke_case  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "data" / "console"
TYPES = ["PANIC", "BUG", "WARNING", "EXCEPTION", "HUNG_TASK", "SOFTLOCKUP", "ARRAY_BOUNDS",
         "CORRUPT_LIST_ADD", "REFCOUNT_INC_OVERFLOW", "EXHAUST_STACK"]


def main(types: list[str]) -> None:
    cfg = config.load(None)
    ui = Ui()
    with tempfile.TemporaryDirectory(prefix="capture-") as tmp:
        logs = Path(tmp)
        v = lkdtm_variant(cfg, "patched", logs, sanitizers=True)
        p = pipeline.prepare_variants(cfg, [v], logs, ui)
        for kind in types:
            try:
                with pipeline.deployed(cfg, p, v.name, logs, ui) as (vm, guest):
                    run = checks.run_case(provoke_case(kind), guest, v.name, ())
                    ui.note(f"{kind}: {run.result.observed[:120]}")
            except Exception as exc:  # a panic ends the VM at boot of the next command
                ui.note(f"{kind}: {type(exc).__name__}: {str(exc)[:120]}")
            shutil.copy(logs / f"{v.name}.console.log", OUT / f"lkdtm-{kind.lower()}.log")


if __name__ == "__main__":
    main(sys.argv[1:] or TYPES)
