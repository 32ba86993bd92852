"""The job engine: everything a worker does with a run.

queue (the procrastinate App), tasks (what a worker executes), worker (the process),
lifecycle (the run state machine, the only writer of a run's status), fence (the
attempt a unit works for), runner (one attempt: attempt, units, endings), reconciler
(repairs runs that disagree with their queue job or worker), dependencies, scheduler
and retention. Import the submodules themselves; this package imports nothing so
that the web side can use one of them without pulling in the rest.
"""
