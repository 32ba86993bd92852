"""A change applied to a fleet of three platforms in one run: each device rolls out and
rolls back with its own platform's mechanism (IOS ``configure terminal`` and ``configure
replace ... force``; EOS a configure session and ``configure replace``; IOS-XR a commit
and ``rollback configuration last 1``), on the stateful emulator (127.0.0.1), through the
runner, with a real git config store."""

from __future__ import annotations

import git

from tests.integration.change_lab import TEMPLATE
from tests.integration.test_api_support import Api, make_tokens
from tests.integration.test_change_apply import (  # noqa: F401 - engine_config: a fixture
    NTP_TOOK,
    apply,
    approved,
    engine_config,
    states,
)

pytest_plugins = ["tests.integration.change_fixtures"]

FLEET = 6
PLATFORMS = ("cisco_ios", "arista_eos", "cisco_xr")


def test_each_platform_pushes_and_rolls_back_its_own_way(app, ctx, client, lab):
    api = Api(client=client, tokens=make_tokens(app))
    originals = {d.name: lab.config_of(d.name) for d in lab.devices}
    change = approved(
        api,
        template=TEMPLATE.replace("{{ note }}", "{{ notes[device.name] | default('ok') }}"),
        variables={"notes": {"eos-005": "BREAKS-BGP", "xr-006": "BREAKS-BGP"}},
        canary=1,
        wave_size=3,
    )
    shown = apply(app, api, change)

    assert states(shown) == {
        "ios-001": "applied",
        "eos-002": "applied",
        "xr-003": "applied",
        "ios-004": "applied",
        "eos-005": "rolled_back",
        "xr-006": "rolled_back",
    }
    assert shown["status"] == "partially_applied"
    # EOS keeps its three-space indents; IOS its one
    assert "   description eos-002 ok" in lab.config_of("eos-002").splitlines()
    assert " description ios-004 ok" in lab.config_of("ios-004").splitlines()
    assert " description xr-003 ok" in lab.config_of("xr-003").splitlines()
    by_name = {d["device"]["name"]: d for d in shown["devices"]}
    for name in ("eos-005", "xr-006"):
        assert lab.config_of(name) == originals[name]
        assert by_name[name]["rollback_method"] == "native"
    # each platform's own way
    eos = lab.commands_of("eos-002")
    assert any(c.startswith("configure session ") for c in eos) and "commit" in eos
    assert "configure terminal" not in eos
    assert "configure terminal" in lab.commands_of("ios-001")
    assert any(c.startswith("configure replace flash:") for c in lab.commands_of("eos-005"))
    assert "commit" in lab.commands_of("xr-003")
    assert "rollback configuration last 1" in lab.commands_of("xr-006")
    # before and after of the EOS device in the config store
    repo = git.Repo(app.config["ROOKERY_CONFIG_REPO"])
    done = by_name["eos-002"]
    after = repo.commit(done["after_commit"]).tree["eos-002.cfg"].data_stream.read().decode()
    assert "ntp server 192.0.2.123" in after
    assert NTP_TOOK["command"] in [c for c in eos if c.startswith("show running-config |")]
