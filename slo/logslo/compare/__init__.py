"""Judge a candidate model version against a baseline (`torchfaas-slo compare`, and each
look of `torchfaas-slo watch`).

    sampling.py     each version's requests (Sample) and one window's figures (Comparison)
    judgements.py   each comparison contract decided by an interval (judge.py), the verdict
    feature.py      a comparison feature's contracts decided without behave (calibration, watch)
    text.py         the verdict in words: markdown (a pull-request comment), console text
    reports.py      report.json and the files written from it (report.md, report.html)
    behave_glue.py  the hooks and steps `torchfaas-slo compare` runs under behave

The verdict, and the command's exit code (../verdicts.py): promote (0) when every contract
is confidently within its bound; hold (1) when one is confidently beyond it; inconclusive
(2) when the data cannot tell (the report says how many requests would); broken (3) when
the run itself failed (no source, Loki failing, a version with no requests, a step error).
The comparison contracts are Gherkin (e.g. functions/classifier/compare/*.feature): the
bounds and the confidence level are lines of their text.

Importing this package imports no statistics (numpy, scipy): html.py reads text.py.
"""

from ..verdicts import BROKEN, EXIT_CODES, HOLD, INCONCLUSIVE, PROMOTE

__all__ = ["BROKEN", "EXIT_CODES", "HOLD", "INCONCLUSIVE", "PROMOTE"]
