"""The demo's drift: one device's configuration changes now and then, so diffs appear."""

from __future__ import annotations

from app.demo_lab import drifted


def test_drift_replaces_its_own_line_in_the_platforms_comment_syntax():
    ios = drifted("cisco_ios", "hostname r1\ninterface Gi0/1\n", 1)
    assert ios == "hostname r1\ninterface Gi0/1\n! rookery demo drift 1\n"
    again = drifted("cisco_ios", ios, 2)
    assert again.count("rookery demo drift") == 1 and again.endswith("drift 2\n")
    assert drifted("juniper_junos", "system {}\n", 3).endswith("/* rookery demo drift 3 */\n")
    assert drifted("huawei", "sysname r1\n", 4).endswith("# rookery demo drift 4\n")
