"""Outputs where people look: a run's device outputs on its page, the device page and the CLI.

run_commands keeps each device's output (and TextFSM records); a network engineer reads
them on the run page (one device or all, copy, download), on the device page, with
``rookery run show``, and a script one device at a time from the API. Real FakeNOS
devices on 127.0.0.1 produce the outputs.
"""

from __future__ import annotations

from app.cli import cli
from app.demo_lab import default_fleet
from tests.integration import test_run_commands
from tests.integration.helpers import load_lab_devices
from tests.integration.test_api_support import Api, make_tokens, ok

pytest_plugins = ["tests.devices"]

#: the app of the run_commands tests: quick timeouts, no retries
app = test_run_commands.app
ctx = test_run_commands.ctx


def _lab_run(app, device_lab_factory):
    ios, eos = default_fleet(2, ["cisco_ios", "arista_eos"])
    lab = device_lab_factory([ios, eos])
    load_lab_devices(lab.devices, lab)
    run = test_run_commands.run_commands(app, "show version\nshow clock", textfsm=True)
    return run, test_run_commands.results(run.id), ios, eos


def test_run_page_loads_each_output_on_demand_and_downloads_them(
    app, ctx, client, auth, device_lab_factory
):
    run, results, ios, eos = _lab_run(app, device_lab_factory)
    auth.create("vera", "viewer-pw-1", "viewer")
    auth.login("vera", "viewer-pw-1")
    page = client.get(f"/runs/{run.id}").get_data(as_text=True)
    mine = results[ios.name]
    assert f'id="show-output-{mine.id}"' in page and 'id="expand-outputs"' in page
    assert f"{ios.name}# show clock" not in page  # loaded when expanded, not with the page

    fragment = client.get(f"/runs/{run.id}/results/{mine.id}/output").get_data(as_text=True)
    assert f"{ios.name}# show version" in fragment and f"{ios.name}# show clock" in fragment
    if mine.data.get("parsed"):  # a table per parsed command, its fields as columns
        command, records = next(iter(mine.data["parsed"].items()))
        assert f"{command} <span" in fragment and '<table class="records">' in fragment
        assert next(iter(records[0])) in fragment
    assert 'data-copy="#output-text-' in fragment

    one = client.get(f"/runs/{run.id}/results/{mine.id}/output.txt")
    assert one.status_code == 200 and "attachment" in one.headers["Content-Disposition"]
    assert one.get_data(as_text=True) == mine.output
    every = client.get(f"/runs/{run.id}/outputs.txt").get_data(as_text=True)
    assert f"--- {eos.name} ---\n{eos.name}# show version" in every
    assert every.index(f"--- {eos.name} ---") < every.index(f"--- {ios.name} ---")

    # a result of another run is not reachable through this run
    assert client.get(f"/runs/{run.id + 1}/results/{mine.id}/output").status_code == 404
    assert client.get(f"/runs/{run.id}/results/99999999999999/output").status_code == 404

    device_page = client.get(f"/devices/{mine.device_id}").get_data(as_text=True)
    assert f'id="show-output-{mine.id}"' in device_page


def test_cli_run_show_prints_outputs_and_run_logs_names_devices(app, ctx, device_lab_factory):
    run, _, ios, eos = _lab_run(app, device_lab_factory)
    runner = app.test_cli_runner()
    shown = runner.invoke(cli, ["run", "show", str(run.id)])
    assert shown.exit_code == 0, shown.output
    assert f"--- {ios.name} ---\n{ios.name}# show version" in shown.output
    assert f"{eos.name}# show clock" in shown.output

    only = runner.invoke(cli, ["run", "show", str(run.id), "--device", eos.name])
    assert f"--- {eos.name} ---" in only.output and f"--- {ios.name} ---" not in only.output
    quiet = runner.invoke(cli, ["run", "show", str(run.id), "--no-output"])
    assert "---" not in quiet.output and "Devices:" in quiet.output
    missing = runner.invoke(cli, ["run", "show", str(run.id), "--device", "nope"])
    assert missing.exit_code == 1
    assert missing.output.strip() == f"Error: Run #{run.id} has no result for device 'nope'."

    logs = runner.invoke(cli, ["run", "logs", str(run.id)])
    assert f"[{ios.name}]" in logs.output and "[device " not in logs.output


def test_api_answers_a_run_without_outputs_and_each_output_on_its_own(
    app, ctx, client, device_lab_factory
):
    """A script reads the run (counts, no outputs), pages its results (each with its
    output's size and link) and fetches the one device's output it wants."""
    run, results, ios, eos = _lab_run(app, device_lab_factory)
    api = Api(client=client, tokens=make_tokens(app))
    answer = api.get(f"/api/v1/runs/{run.id}", as_="viewer")
    detail = ok(answer)
    assert detail["summary"] == {"total": 2, "by_status": {"success": 2}, "changed": 0}
    assert "results" not in detail and "show version" not in answer.get_data(as_text=True)

    page = ok(api.get(f"{detail['results_url']}?limit=1", as_="viewer"))
    assert [r["device"] for r in page["items"]] == [eos.name]  # by name
    rest = ok(api.get(f"{detail['results_url']}?limit=1&cursor={page['next']}", as_="viewer"))
    assert [r["device"] for r in rest["items"]] == [ios.name] and rest["next"] is None
    row = rest["items"][0]
    mine = results[ios.name]
    assert row["output_bytes"] == len(mine.output.encode()) and "output" not in row

    whole = ok(api.get(row["output_url"], as_="viewer"))
    assert whole["output"] == mine.output and f"{ios.name}# show clock" in whole["output"]
    assert whole["data"] == mine.data and whole["status"] == "success"
    missing = api.get(f"/api/v1/runs/{run.id}/results/not-in-this-run", as_="viewer")
    assert missing.status_code == 404
    assert missing.get_json()["message"] == (
        f"Run #{run.id} has no result for device 'not-in-this-run'."
    )
