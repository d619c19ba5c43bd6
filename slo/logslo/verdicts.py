"""The words a comparison decides in, the exit code each one gives the commands, and the
power its reports quote a detectable change at."""

PROMOTE, HOLD, INCONCLUSIVE, BROKEN = "promote", "hold", "inconclusive", "broken"
EXIT_CODES = {PROMOTE: 0, HOLD: 1, INCONCLUSIVE: 2, BROKEN: 3}
POWER = 0.95  # the reports' "detectable change": held this often at this sample size


def overall(verdicts, broken: bool = False) -> str:
    """Hold if any contract holds, else inconclusive if any is, else promote; broken when
    the run failed or judged nothing."""
    found = set(verdicts)
    if broken or not found:
        return BROKEN
    return HOLD if HOLD in found else INCONCLUSIVE if INCONCLUSIVE in found else PROMOTE
