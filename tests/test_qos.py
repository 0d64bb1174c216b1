"""Download bandwidth control, proven on this machine's kernel in namespaces the test makes."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest

from conftest import require_root, require_tool
from mediastack.host.qos import UNIT_FILE, qos_plan, qos_scripts
from mediastack.model.config import StackConfig
from netlab import Lab, summary

LINE_UP, LINE_DOWN = 100_000_000, 200_000_000
CAP_UP, CAP_DOWN = 40_000_000, 60_000_000


def config(**downloads: str) -> StackConfig:
    return StackConfig.model_validate(
        {
            "domain": "media.example.org",
            "hosts": [
                {
                    "name": "nas",
                    "address": "nas.home.arpa",
                    "cpus": 4,
                    "memory": "8GiB",
                    "link": {"interface": "up0", "up": "100mbit", "down": "200mbit"},
                }
            ],
            "downloads": downloads or {"max_up": "40mbit", "max_down": "60mbit"},
        }
    )


def test_caps_default_to_a_share_of_the_line() -> None:
    plan = qos_plan(config(max_up="10mbit"))
    assert plan is not None
    assert (plan.up, plan.down) == (10_000_000, 160_000_000)  # down: 80 % of the 200mbit line
    no_link = StackConfig.model_validate(
        {"domain": "media.example.org", "hosts": [{"name": "a", "address": "localhost", "cpus": 2, "memory": "4GiB"}]}
    )
    assert qos_plan(no_link) is None and qos_scripts(no_link) == {}


def test_scripts_pass_shellcheck(tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck")
    for name, text in qos_scripts(config()).items():
        if name.endswith(".sh"):
            (tmp_path / name).write_text(text)
            done = subprocess.run([shellcheck, "-s", "sh", str(tmp_path / name)], capture_output=True, text=True)
            assert done.returncode == 0, f"{name}:\n{done.stdout}"


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): (p.read_text() + oct(p.stat().st_mode) if p.is_file() else "<dir>")
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("existing_unit", [None, "[Unit]\nDescription=an older hand-made unit\n"])
def test_install_is_idempotent_and_delete_restores_exactly(tmp_path: Path, existing_unit: str | None) -> None:
    scripts = qos_scripts(config())
    root = tmp_path / "host"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "usr/local/sbin").mkdir(parents=True)
    if existing_unit:
        (root / UNIT_FILE.lstrip("/")).write_text(existing_unit)
    env = {**os.environ, "ROOT": str(root)}

    def run(name: str) -> str:
        done = subprocess.run(["sh", "-c", scripts[name]], env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    before = snapshot(root)
    assert run("qos-create.sh").strip() == "qos: installed tool unit"
    installed = snapshot(root)
    tool = root / "usr/local/sbin/mediastack-qos"
    assert tool.read_text() == scripts["qos.sh"] and os.access(tool, os.X_OK)
    assert (root / UNIT_FILE.lstrip("/")).read_text() == scripts["mediastack-qos.service"]
    assert run("qos-create.sh").strip() == "qos: files unchanged"
    assert snapshot(root) == installed
    out = run("qos-delete.sh")
    assert ("unit: restored the earlier file" if existing_unit else "unit: removed") in out
    assert snapshot(root) == before


def test_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    scripts = qos_scripts(config())
    root = tmp_path / "root"
    # systemd's own units (the targets the unit orders itself after) in the sandbox root, then the stack's.
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    subprocess.run(
        ["sh", "-c", scripts["qos-create.sh"]], env={**os.environ, "ROOT": str(root)}, check=True, capture_output=True
    )
    unit = root / UNIT_FILE.lstrip("/")
    done = subprocess.run([analyze, "verify", f"--root={root}", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def lab():
    for tool in ("ip", "tc", "nft", "iperf3", "ping"):
        require_tool(tool)
    require_root("network namespaces need root")
    with Lab(line_up=LINE_UP, line_down=LINE_DOWN) as built:
        yield built


def within(measured: float, cap: int, tolerance: float = 0.10) -> bool:
    return abs(measured - cap) <= tolerance * cap


def test_shaping_caps_downloads_and_keeps_streams_fast(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    tool = qos_scripts(config())["qos.sh"]
    # Without shaping the download client fills the line, and the modem's buffer with it.
    unshaped = lab.iperf(3)
    assert unshaped > CAP_UP * 1.5, f"the lab line should let an unshaped upload far past the cap: {unshaped:.0f}"

    first = lab.run_script(tool, "apply")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("qos: applied (down 60mbit, up 40mbit")
    again = lab.run_script(tool, "apply")
    assert again.returncode == 0 and again.stdout.strip() == "qos: unchanged"

    up = lab.iperf(4)
    down = lab.iperf(4, reverse=True)
    pings, loaded = lab.ping_under(count=25, interval=0.2, load_seconds=4)
    with capsys.disabled():
        print(
            f"\n  qos: upload {up / 1e6:.1f} of {CAP_UP / 1e6:.0f} Mbit/s cap, download {down / 1e6:.1f} of "
            f"{CAP_DOWN / 1e6:.0f}; stream pings while the client uploads ({(loaded or 0) / 1e6:.1f} Mbit/s): "
            f"{summary(pings)} (unshaped upload {unshaped / 1e6:.1f})"
        )
    assert within(up, CAP_UP), f"upload {up:.0f} bit/s is not within 10 % of {CAP_UP}"
    assert within(down, CAP_DOWN), f"download {down:.0f} bit/s is not within 10 % of {CAP_DOWN}"
    assert loaded is not None and within(loaded, CAP_UP)
    assert len(pings) >= 20 and statistics.median(pings) < 2.0, pings

    cleared = lab.run_script(tool, "clear")
    assert cleared.returncode == 0 and cleared.stdout.strip() == "qos: cleared"
    assert "htb" not in lab.qdiscs() and "mediastack_qos" not in lab.nft_tables()
    assert lab.run_script(tool, "clear").stdout.strip() == "qos: nothing to clear"


def test_apply_refuses_a_missing_interface(lab: Lab) -> None:
    cfg = config()
    broken = cfg.model_copy(
        update={"hosts": [cfg.host.model_copy(update={"link": cfg.host.link.model_copy(update={"interface": "eth9"})})]}
    )
    before = lab.qdiscs()
    done = lab.run_script(qos_scripts(broken)["qos.sh"], "apply")
    assert done.returncode == 1
    assert "interface eth9 does not exist; set hosts[].link.interface" in done.stderr
    assert lab.qdiscs() == before


def test_lab_is_gone_after_use() -> None:
    for tool in ("ip", "tc", "nft"):
        require_tool(tool)
    require_root("network namespaces need root")
    with Lab(line_up=LINE_UP, line_down=LINE_DOWN) as built:
        names = list(built.names.values())
        during = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert all(name in during for name in names)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(name in listed for name in names)


def test_clear_restores_the_root_qdisc_apply_replaced(lab: Lab, tmp_path: Path) -> None:
    """A root qdisc the host had before (here a tbf with its own rate) comes back on clear, as it was."""
    host, iface = lab.ns("host"), lab.interface
    run = ["ip", "netns", "exec", host, "tc", "qdisc"]
    subprocess.run([*run, "add", "dev", iface, "root", "handle", "5:", "tbf", "rate", "900mbit", "burst", "64kb",
                    "latency", "50ms"], check=True)  # fmt: skip
    before = subprocess.run([*run, "show", "dev", iface], capture_output=True, text=True, check=True).stdout
    assert before.startswith("qdisc tbf 5: root")
    # The record of what was there goes to a directory of the test's own (on a host: /run/mediastack/qos).
    tool = f"MEDIASTACK_QOS_STATE={tmp_path}/qos; export MEDIASTACK_QOS_STATE\n" + qos_scripts(config())["qos.sh"]
    try:
        assert lab.run_script(tool, "apply").returncode == 0
        assert "htb 1: root" in lab.qdiscs()
        assert lab.run_script(tool, "apply").stdout.strip() == "qos: unchanged"  # the record is kept, not redone
        cleared = lab.run_script(tool, "clear")
        assert cleared.returncode == 0, cleared.stderr
        assert "earlier root qdisc (tbf 5:) restored" in cleared.stdout
        after = subprocess.run([*run, "show", "dev", iface], capture_output=True, text=True, check=True).stdout
        # tc keeps tbf's burst as a time at the rate, so it reads back a few bytes off; the rest is as it was.
        # (refcnt is the kernel's count of references, not a setting)
        kept = [f for i, f in enumerate(after.split()[:8]) if i not in (4, 5)]
        assert kept == ["qdisc", "tbf", "5:", "root", "rate", "900Mbit"], after
        assert "lat 50ms" in after
        assert not (tmp_path / "qos").exists()
    finally:
        subprocess.run([*run, "del", "dev", iface, "root"], capture_output=True)
