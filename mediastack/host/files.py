"""Shell lines that install a file or a host tool on a host, backing up once what was there, and put it back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mediastack.quoting import SHELLCHECK_LITERAL, sh_text

BACKUP_DIR = "/var/lib/mediastack/backup"


# The first create keeps what was there (or notes that nothing was), so delete can put it back exactly.
_BACKUP_ONCE = """if [ -f "$target" ] && [ ! -e "$backup" ] && [ ! -e "$backup.absent" ]; then
  cp -p "$target" "$backup"
elif [ ! -f "$target" ] && [ ! -e "$backup" ] && [ ! -e "$backup.absent" ]; then
  : > "$backup.absent"
fi
"""


def install_file(label: str, target: str, content: str, mode: str = "644") -> str:
    """Shell lines that write `content` to ROOT+target when it differs, backing up what was there once;
    appends the label to $changed when they wrote."""
    # A quoted word, not a here-document: no line of the content can end it.
    return f"""{_backup_prelude(target)}{SHELLCHECK_LITERAL}new=$({sh_text(content)})
if [ ! -f "$target" ] || [ "$(cat "$target")" != "$new" ]; then
  mkdir -p "$(dirname "$target")" "$(dirname "$backup")"
{_BACKUP_ONCE}  printf '%s\\n' "$new" > "$target"
  chmod {mode} "$target"
  changed="$changed {label}"
fi
"""


def restore_file(label: str, target: str) -> str:
    """Shell lines that put back exactly the file that was there before install_file (or none); appends the
    label to $reverted when they changed something."""
    return f"""{_backup_prelude(target)}if [ -e "$backup" ]; then
  cp -p "$backup" "$target"
  rm -f "$backup"
  echo "{label}: restored the earlier file"
  reverted="${{reverted:-}} {label}"
elif [ -e "$backup.absent" ]; then
  rm -f "$target" "$backup.absent"
  echo "{label}: removed"
  reverted="${{reverted:-}} {label}"
else
  echo "{label}: nothing to revert"
fi
rmdir -p "$(dirname "$backup")" 2>/dev/null || true
"""


def tool_unit(name: str, description: str) -> str:
    """A oneshot unit that runs `<name> apply` at boot (after Docker has made its networks) and `clear` on stop."""
    return f"""[Unit]
Description=mediastack: {description}
After=network-online.target docker.service
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/{name} apply
ExecStop=/usr/local/sbin/{name} clear

[Install]
WantedBy=multi-user.target
"""


def tool_create(label: str, name: str, tool: str, unit: str, more_units: Mapping[str, str] | None = None) -> str:
    """Install a host tool as /usr/local/sbin/<name> with its unit, enable it and apply. Idempotent. `more_units`
    (unit file name -> content) are installed beside it; its timers are enabled and started after the apply."""
    more = dict(more_units or {})
    files = install_file("tool", f"/usr/local/sbin/{name}", tool, mode="755") + install_file(
        "unit", f"/etc/systemd/system/{name}.service", unit
    )
    files += "".join(install_file(f, f"/etc/systemd/system/{f}", text) for f, text in more.items())
    timers = "".join(f"  systemctl enable --quiet --now {f}\n" for f in more if f.endswith(".timer"))
    return f"""#!/bin/sh
# mediastack: install and start {name}. Idempotent.
set -eu
ROOT="${{ROOT:-}}"
changed=""
{files}if [ -z "$changed" ]; then
  echo "{label}: files unchanged"
else
  echo "{label}: installed$changed"
fi
if [ -z "$ROOT" ]; then
  systemctl daemon-reload
  systemctl enable --quiet {name}.service
  /usr/local/sbin/{name} apply
{timers}fi
"""


def tool_delete(label: str, name: str, more_units: Sequence[str] = ()) -> str:
    """Stop and clear a host tool, then put back exactly the files that were there before (its `more_units` too,
    their timers stopped first)."""
    restore = restore_file("tool", f"/usr/local/sbin/{name}") + restore_file(
        "unit", f"/etc/systemd/system/{name}.service"
    )
    restore += "".join(restore_file(f, f"/etc/systemd/system/{f}") for f in more_units)
    timers = "".join(
        f"  systemctl disable --quiet --now {f} 2>/dev/null || true\n" for f in more_units if f.endswith(".timer")
    )
    return f"""#!/bin/sh
# mediastack: stop {name} and put back exactly what was there before.
set -eu
ROOT="${{ROOT:-}}"
if [ -z "$ROOT" ]; then
{timers}  systemctl disable --quiet {name}.service 2>/dev/null || true
  if [ -x /usr/local/sbin/{name} ]; then
    /usr/local/sbin/{name} clear
  fi
fi
{restore}if [ -z "$ROOT" ]; then
  systemctl daemon-reload
fi
"""


def _backup_prelude(target: str) -> str:
    return f"""ROOT="${{ROOT:-}}"
target="$ROOT{target}"
backup="$ROOT{BACKUP_DIR}{target}"
"""
