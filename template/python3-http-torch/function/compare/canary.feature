Feature: A candidate model is promoted only if it is confidently as good as the baseline
  The candidate (a new model version, a canary, or the code of a pull request) is
  compared with the baseline over the same window, request by request, each figure
  estimated with an interval at the confidence level below: HOLD when the whole interval
  is beyond a bound, PROMOTE when every interval is within its bound, INCONCLUSIVE
  otherwise. Add a contract on what your model answers (a class mix, a predicted value:
  see functions/classifier/compare and functions/diabetes/compare).

  Background:
    Given the function being checked
    And a confidence level of 99%
    When I compare the requests of the last 1 hour

  Scenario: Both versions answered enough requests to be compared
    Then each version served at least 100 requests

  Scenario: The candidate is not slower
    Then the candidate's latency is at most 10% above the baseline's

  Scenario: The candidate's slowest requests are not much slower
    Then the candidate's p99 latency is at most 100% above the baseline's

  Scenario: The candidate does not fail more often
    Then the candidate's server-error ratio (5xx) is at most 1 point above the baseline's
