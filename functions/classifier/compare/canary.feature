Feature: A candidate model version is promoted only if it is confidently as good as the baseline
  The candidate (a new model version, a canary, or the code of a pull request) is
  compared with the baseline over the same window of the same log, request by request
  as the SLO contracts count them. Each figure is estimated with an interval at the
  confidence level below, from both versions' requests:
    - HOLD when the whole interval is beyond a bound (confidently worse than allowed),
    - PROMOTE when every interval is within its bound,
    - INCONCLUSIVE otherwise: the report says how many more requests would decide.
  Every number here is part of the contract: change it here to change the rule.
  docs/review.md explains each test and the calibration behind these bounds.

  Background:
    Given the function "classifier"
    And a confidence level of 99%
    And a watch leaves out the first 30 seconds of each version (its warm-up)
    When I compare the requests of the last 1 hour

  Scenario: Both versions answered enough requests to be compared
    Then each version served at least 100 requests

  Scenario: The candidate is not slower
    Then the candidate's latency is at most 10% above the baseline's

  Scenario: The candidate's slowest requests are not much slower
    Then the candidate's p99 latency is at most 100% above the baseline's

  Scenario: The candidate does not fail more often
    Then the candidate's server-error ratio (5xx) is at most 1 point above the baseline's

  Scenario: The candidate predicts the same mix of classes
    Then the candidate's class mix differs from the baseline's in at most 10% of answers
