"""The job engine: everything a worker does with a run.

queue (the procrastinate App), tasks (what a worker executes), worker (the process),
runner (one attempt of a run), dependencies, scheduler, control (repairs) and retention.
Import the submodules themselves; this package imports nothing so that the web side
can use one of them without pulling in the rest.
"""
