"""reproduce.sh: a run's command, with what decides its result pinned.

Pinned: the lab's git commit (and a fingerprint of uncommitted changes), the
exact argv, the config file's content (embedded: the script runs with this
copy, never with whatever the file says later), the inputs of every build key
(lab/jobs/keys.py) and each variant's build key, and a checksum of every file the
command line names (patches, job files, scripts). Run in a checkout that has
changed since, the script says what differs before it runs; `--check`
compares only.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shlex
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from lab import config
from lab.host import proc
from lab.kernel import gittree

# Options whose value is a file that decides the result.
FILE_OPTIONS = ("--patch", "--job-file", "--script", "--kconfig", "--fragment")
# Options the reproduction replaces: the config with the pinned copy, and the
# results folder with a new one (the old one holds this very script).
REPLACED = ("--config", "--results")
CONFIG_EOF = "LAB_CONFIG_EOF"


def _git(repo: Path, *args: str) -> proc.CommandResult:
    return gittree.query(repo, *args)


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")  # what git printed, byte for byte


def git_state(repo: Path) -> dict[str, str]:
    """Commit, dirty flag and fingerprints, computed exactly as the script does."""
    head = _git(repo, "rev-parse", "HEAD")
    if head.exit_status != 0:
        return {"commit": "", "dirty": "unknown", "diff": "", "untracked": ""}
    diff = _bytes(_git(repo, "diff", "HEAD", "--binary").stdout)
    untracked = _bytes(_git(repo, "ls-files", "--others", "--exclude-standard").stdout)
    return {
        "commit": head.stdout.strip(),
        "dirty": "yes" if diff or untracked else "no",
        "diff": hashlib.sha256(diff).hexdigest(),
        "untracked": hashlib.sha256(untracked).hexdigest(),
    }


def _option_values(argv: Sequence[str], option: str) -> list[str]:
    values = []
    for i, word in enumerate(argv):
        if word == "--":
            break
        if word == option and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif word.startswith(option + "="):
            values.append(word.split("=", 1)[1])
    return values


def _without(argv: Sequence[str], options: Sequence[str]) -> tuple[list[str], list[str]]:
    """argv minus `options` and their values, split at `--` (a guest command)."""
    cut = list(argv).index("--") if "--" in argv else len(argv)
    head, tail = list(argv[:cut]), list(argv[cut:])
    out: list[str] = []
    skip = False
    for word in head:
        if skip:
            skip = False
        elif word in options:
            skip = True
        elif not any(word.startswith(o + "=") for o in options):
            out.append(word)
    return out, tail


def _relative(path: Path, repo: Path) -> str:
    """`path` relative to the checkout when inside it (so another checkout
    has its own), else absolute."""
    try:
        return str(path.relative_to(repo)) or "."
    except ValueError:
        return str(path)


def _q(value: str) -> str:
    return shlex.quote(value)


def render(*, run_id: str, argv: Sequence[str], repo: Path, cwd: Path,
           git: Mapping[str, str], config_rel: str, config_text: str,
           key_lines: Sequence[str], key_args: Sequence[str],
           variant_keys: Mapping[str, str], files: Mapping[str, str],
           takes_config: bool, note: str = "") -> str:
    """The script's text (pure, for tests)."""
    base, guest_cmd = _without(argv, REPLACED)
    config_args = ['--config "$pinned"'] if takes_config else []
    command = " ".join([*map(_q, base), *config_args, '"$@"', *map(_q, guest_cmd)])
    delimiter = CONFIG_EOF
    while delimiter in config_text.splitlines():
        delimiter += "_"
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    dirty_note = ", with uncommitted changes" if git["dirty"] == "yes" else ""
    lines = [
        "#!/bin/sh",
        f"# Reproduce kernel-lab run {run_id} (written {created}).",
        "#",
        f"# Pinned: the lab's commit ({git['commit'][:12] or 'unknown'}{dirty_note}), the exact",
        "# command line, the config file's content (embedded below; the run uses this",
        "# copy), the inputs of every build key and the files the command line names.",
        "# Before running, it says what differs in the checkout it runs in.",
        "#",
        "#   ./reproduce.sh              compare, then run the recorded command",
        "#   ./reproduce.sh --check      compare only: exit 1 if anything differs",
        "#   ./reproduce.sh OPTIONS...   extra lab options, e.g. --results DIR",
        "#",
        "# The checkout: $LAB_REPO, else the current directory if it is a kernel-lab",
        "# checkout, else the one the run was made in.",
        "#",
        f"# Recorded command: lab {shlex.join(argv)}",
        *(f"# Build key of {name}: {key}" for name, key in variant_keys.items()),
        *([f"# {note}"] if note else []),
        "set -u",
        "",
        f"RECORDED_REPO={_q(str(repo))}",
        f"RECORDED_COMMIT={_q(git['commit'])}",
        f"RECORDED_DIRTY={_q(git['dirty'])}",
        f"RECORDED_DIFF_SHA256={_q(git['diff'])}",
        f"RECORDED_UNTRACKED_SHA256={_q(git['untracked'])}",
        f"RECORDED_CWD={_q(_relative(cwd, repo))}",
        f"CONFIG_PATH={_q(config_rel)}",
        f"CONFIG_SHA256={_q(hashlib.sha256(config_text.encode()).hexdigest())}",
        f"RECORDED_KEY_INPUTS={_q(chr(10).join(key_lines))}",
        f"RECORDED_FILES={_q(chr(10).join(f'{h}  {p}' for p, h in files.items()))}",
        "",
        _BODY,
        "# The config as it was (empty: the run used the lab's defaults).",
        f"cat > \"$pinned\" <<'{delimiter}'",
        config_text.rstrip("\n"),
        delimiter,
        "",
        ("check_key_inputs " + " ".join(map(_q, key_args))) if key_lines
        else ": # the build key inputs could not be recorded",
        "finish",
        "",
        'cd "$run_dir" || exit 2',
        'say "running: "' + _q(f"lab {shlex.join(base)}"
                              + (" (with the pinned config)" if takes_config else ""))
        + '" $*"',
        f"lab {command}",
        "status=$?",
        "exit $status",
        "",
    ]
    return "\n".join(lines)


# The script's logic, after the recorded values. POSIX sh.
_BODY = r'''say() { printf '%s\n' "$*" >&2; }
differs=0
differ() { differs=1; say "differs: $*"; }
is_lab() { [ -f "$1/lab/cli.py" ] && [ -f "$1/pyproject.toml" ]; }

if [ -n "${LAB_REPO:-}" ]; then repo=$LAB_REPO
elif is_lab "$PWD"; then repo=$PWD
else repo=$RECORDED_REPO
fi
if ! is_lab "$repo"; then
    say "reproduce.sh: $repo is not a kernel-lab checkout (set LAB_REPO)"
    exit 2
fi
repo=$(cd "$repo" && pwd)
check_only=no
if [ "${1:-}" = --check ]; then check_only=yes; shift; fi
case $RECORDED_CWD in /*) run_dir=$RECORDED_CWD ;; *) run_dir=$repo/$RECORDED_CWD ;; esac
[ -d "$run_dir" ] || run_dir=$repo
say "checkout: $repo"

# The lab's own code: this checkout's, not an installed copy's.
py=$repo/.venv/bin/python
[ -x "$py" ] || py=python3
lab() { PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$py" -m lab.cli "$@"; }
sha() { sha256sum | cut -d' ' -f1; }

# 1. The lab's commit and uncommitted changes.
if commit=$(git -C "$repo" rev-parse HEAD 2>/dev/null); then
    if [ "$commit" != "$RECORDED_COMMIT" ]; then
        differ "lab commit: the run used $RECORDED_COMMIT, this checkout is at $commit"
        if git -C "$repo" cat-file -e "${RECORDED_COMMIT:-none}^{commit}" 2>/dev/null
        then
            git -C "$repo" diff --stat "$RECORDED_COMMIT" HEAD >&2
            say "  the recorded lab: git -C $repo worktree add ../kernel-lab-run $RECORDED_COMMIT"
        else
            say "  the recorded commit is not in this checkout's history"
        fi
    fi
    if [ "$(git -C "$repo" diff HEAD --binary | sha)" != "$RECORDED_DIFF_SHA256" ]; then
        if [ "$RECORDED_DIRTY" = yes ]; then
            differ "uncommitted changes: the run had some, and this checkout's are not the same"
        else
            differ "uncommitted changes in this checkout (the run had none):"
        fi
        git -C "$repo" diff HEAD --stat >&2
    fi
    untracked=$(git -C "$repo" ls-files --others --exclude-standard | sha)
    if [ "$untracked" != "$RECORDED_UNTRACKED_SHA256" ]; then
        differ "untracked files are not those of the run:"
        git -C "$repo" ls-files --others --exclude-standard | head -20 >&2
    fi
else
    differ "$repo is not a git checkout: the lab's commit cannot be compared"
fi

# 2. Files the command line names.
if [ -n "$RECORDED_FILES" ]; then
    while IFS= read -r line; do
        want=${line%%  *}
        file=${line#*  }
        case $file in /*) path=$file ;; *) path=$run_dir/$file ;; esac
        if [ ! -f "$path" ]; then
            differ "file $file: missing"
        elif [ "$(sha < "$path")" != "$want" ]; then
            differ "file $file: its content changed since the run"
        fi
    done <<EOF_FILES
$RECORDED_FILES
EOF_FILES
fi

# 3. The config: the recorded copy is what runs.
case $CONFIG_PATH in
    "") config_dir=$repo ;;
    /*) config_dir=$(dirname "$CONFIG_PATH") ;;
    *) config_dir=$(dirname "$repo/$CONFIG_PATH") ;;
esac
[ -d "$config_dir" ] || config_dir=$repo
pinned=$config_dir/.lab-reproduce-$$.toml
cleanup() { rm -f "$pinned"; }
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

compare_config() {
    case $CONFIG_PATH in
        "") current=$repo/lab.toml ;;
        /*) current=$CONFIG_PATH ;;
        *) current=$repo/$CONFIG_PATH ;;
    esac
    if [ -z "$CONFIG_PATH" ]; then
        [ -f "$current" ] && differ "config: the run used none; $current" \
            "now exists (not used: the lab's defaults run, as recorded)"
    elif [ ! -f "$current" ]; then
        differ "config: $CONFIG_PATH is gone (the recorded content runs)"
    elif [ "$(sha < "$current")" != "$CONFIG_SHA256" ]; then
        differ "config: $CONFIG_PATH changed since the run (the recorded content runs):"
        diff -u "$pinned" "$current" | sed 's/^/    /' >&2
    fi
}

# 4. Every input of the build keys (kernel source, compiler, recipe, patches,
# config fragments, image recipe, guest programs), as `lab build
# --print-cache-key` computes them in this checkout.
check_key_inputs() {
    if ! now=$(cd "$run_dir" && lab build --print-cache-key --config "$pinned" "$@" 2>&1); then
        differ "build key inputs: could not be computed here: $(printf '%s\n' "$now" | tail -1)"
        return
    fi
    while IFS= read -r line; do
        name=${line%%=*}
        current=$(printf '%s\n' "$now" | grep "^$name=" || true)
        [ "$current" = "$line" ] || differ "build key input ${name#input-}:" \
            "the run had '${line#*=}', this checkout has '${current#*=}'"
    done <<EOF_KEYS
$RECORDED_KEY_INPUTS
EOF_KEYS
}

finish() {
    compare_config
    if [ "$differs" = 0 ]; then
        say "same lab commit, files, config and build inputs as the recorded run"
    fi
    if [ "$check_only" = yes ]; then exit "$differs"; fi
}
'''


def _key_inputs(repo: Path, cwd: Path, config_path: Path | None, key_args: Sequence[str]
                ) -> tuple[list[str], str]:
    """The build key inputs, computed the way the script will: `lab build
    --print-cache-key` from `repo`'s code, with the config pinned."""
    with tempfile.TemporaryDirectory(prefix="kernel-lab-reproduce-") as tmp:
        if config_path is None:
            config_path = Path(tmp) / "empty.toml"
            config_path.write_text("")
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(repo),
                                                           os.environ.get("PYTHONPATH")]))}
        out = proc.capture(
            [sys.executable, "-m", "lab.cli", "build", "--print-cache-key", "--config",
             str(config_path), *key_args], cwd=cwd, env=env, timeout=120)
    if out.exit_status != 0:
        said = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return [], f"build key inputs not recorded: {said}"
    return [line for line in out.stdout.splitlines() if line.startswith("input-")], ""


def write(out: Path, argv: Sequence[str], *, variant_keys: Mapping[str, str] | None = None,
          repo: Path = config.REPO_ROOT, cwd: Path | None = None) -> Path:
    """Write `out`/reproduce.sh for `lab argv` as run from `cwd` in checkout `repo`."""
    cwd = (cwd or Path.cwd()).resolve()
    repo = repo.resolve()
    argv = list(argv)
    command = argv[0] if argv else ""
    takes_config = bool(command)  # lab run and lab test, the only callers, take --config
    given = _option_values(argv, "--config")
    config_path = ((cwd / given[-1]).resolve() if given
                   else config.default_config_path() or cwd / config.CONFIG_NAME)
    has_config = config_path.is_file()
    # Bytes as they are (read_text would fold \r\n), so the checksum is the file's.
    config_text = config_path.read_bytes().decode() if has_config else ""
    config_rel = _relative(config_path, repo) if has_config else ""
    files = {}
    for option in FILE_OPTIONS:
        for value in _option_values(argv, option):
            path = (cwd / value).resolve()
            if path.is_file():
                files[_relative(path, cwd) if path.is_relative_to(cwd) else str(path)] = (
                    hashlib.sha256(path.read_bytes()).hexdigest())
    patches = tuple((cwd / p).resolve() for p in _option_values(argv, "--patch"))
    debug = "--debug" in argv[: argv.index("--")] if "--" in argv else "--debug" in argv
    key_args = [*(a for p in patches for a in ("--patch", str(p))), *(["--debug"] if debug else [])]
    key_lines, note = _key_inputs(repo, cwd, config_path if has_config else None, key_args)
    if not key_lines:
        key_args = []
    script = out / "reproduce.sh"
    script.write_text(render(
        run_id=out.name, argv=argv, repo=repo, cwd=cwd, git=git_state(repo),
        config_rel=config_rel, config_text=config_text, key_lines=key_lines,
        key_args=key_args, variant_keys=variant_keys or {}, files=files,
        takes_config=takes_config, note=note))
    script.chmod(0o755)
    return script
