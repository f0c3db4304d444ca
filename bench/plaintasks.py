"""A plain function for bare RQ workers in bench/jobs.py: no imports, so a forking worker's
work horse pays nothing for importing it."""


def noop(i: int = 0) -> None:
    return None
