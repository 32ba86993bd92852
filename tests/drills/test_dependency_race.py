"""Drill: two concurrent PATCHes that together make a dependency cycle (issue item 7)."""

from __future__ import annotations

import threading

import pytest

from tests.drills.conftest import Answer, Drill

pytestmark = [pytest.mark.drills, pytest.mark.acceptance]

ROUNDS = 5


def _race(drill: Drill, a: int, b: int) -> dict[int, Answer]:
    """PATCH "a depends on b" and "b depends on a" at the same moment."""
    barrier = threading.Barrier(2)
    answers: dict[int, Answer] = {}

    def patch(job_id: int, other: int) -> None:
        barrier.wait(10)
        answers[job_id] = drill.api("PATCH", f"/jobs/{job_id}", {"depends_on": [other]})

    threads = [threading.Thread(target=patch, args=pair) for pair in ((a, b), (b, a))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


def test_concurrent_patches_never_make_a_cycle(drill: Drill) -> None:
    """Exactly one PATCH wins; starting either job is never a 500; the CLI shows no traceback."""
    drill.start(workers=("A", "B"))
    a = drill.create_job("cycle-a", "noop", params={"seconds": 0})["id"]
    b = drill.create_job("cycle-b", "noop", params={"seconds": 0})["id"]
    problems: list[str] = []
    for round_ in range(1, ROUNDS + 1):
        for job_id in (a, b):
            drill.ok("PATCH", f"/jobs/{job_id}", {"depends_on": []})
        answers = _race(drill, a, b)
        codes = sorted(answer.status for answer in answers.values())
        won = [job_id for job_id, answer in answers.items() if answer.status == 200]
        refused = [answer for answer in answers.values() if 400 <= answer.status < 500]
        if len(won) != 1 or len(refused) != 1 or not refused[0].is_json:
            problems.append(
                f"round {round_}: PATCH answers {codes} (expected one 200 and one 4xx JSON): "
                + "; ".join(str(answer) for answer in answers.values())
            )
            break
    jobs = {job_id: drill.ok("GET", f"/jobs/{job_id}") for job_id in (a, b)}
    if all(jobs[a if j == b else b]["id"] in jobs[j]["depends_on"] for j in (a, b)):
        problems.append(
            f"the saved jobs form a cycle: {[(j, jobs[j]['depends_on']) for j in jobs]}"
        )

    started: list[int] = []
    for job_id in (a, b):
        answer = drill.api("POST", f"/jobs/{job_id}/runs", {})
        if answer.status == 201:
            started.append(answer.json["id"])
        elif not (400 <= answer.status < 500 and answer.is_json):
            problems.append(f"starting job {job_id}: {answer}")
    for name in ("cycle-a", "cycle-b"):
        cli = drill.launcher.run(["job", "run", name], drill.env(), timeout=90)
        if "Traceback" in cli.output:
            problems.append(f"`rookery job run {name}` printed a traceback:\n{cli.describe()}")
        elif cli.returncode != 0 and not any(
            line.startswith("Error:") for line in cli.stderr.splitlines()
        ):
            problems.append(f"`rookery job run {name}` failed without an Error: line")
    assert not problems, "\n".join(problems)

    for run_id in started:
        drill.wait_status(run_id, "COMPLETED_SUCCESS", 60)
        drill.assert_one_execution_per_attempt(run_id)
    drill.assert_no_run_left(bound=60)
