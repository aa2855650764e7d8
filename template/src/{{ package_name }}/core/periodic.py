"""Work a process does now and then rather than on every request, such as deleting stale rows."""

import math
import time


class Periodic:
    """Says when `interval_seconds` have passed since it last said so, and the first time at once.

    At once, because a process restarted more often than the interval would otherwise never
    get its turn. Each process keeps its own: every worker and replica does the work on its
    own schedule, so the work must be harmless to repeat.
    """

    def __init__(self, interval_seconds: float) -> None:
        self.interval_seconds = interval_seconds
        self.last = -math.inf  # time.monotonic() when it last said so

    def due(self) -> bool:
        """Whether it is time again; if so, the next interval starts now."""
        moment = time.monotonic()
        if moment - self.last < self.interval_seconds:
            return False
        self.last = moment
        return True
