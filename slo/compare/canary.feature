Feature: A candidate model version is promoted only if it behaves like the baseline
  The candidate (a new model version, a canary, or the code of a pull request) is
  compared with the baseline over the same window of the same log, request by request
  as the SLO contracts count them. Each threshold below is part of the contract: change
  the number here to change the rule. A candidate that breaks one is held; when either
  version has too few requests, nothing is judged.

  Background:
    Given the function "classifier"
    When I compare the requests of the last 1 hour

  Scenario: Both versions answered enough requests to be compared
    Then each version served at least 100 requests

  Scenario: The candidate is not slower
    Then the candidate's p99 latency is at most 10% above the baseline's

  Scenario: The candidate does not fail more often
    Then the candidate's server-error ratio (5xx) is at most 0.5 points above the baseline's

  Scenario: The candidate predicts the same mix of classes
    Then the candidate's class mix is within a PSI of 0.1 of the baseline's
