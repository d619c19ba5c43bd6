Feature: A candidate diabetes model is promoted only if it is confidently as good as the baseline
  The candidate (a new model version, a canary, or the code of a pull request) is
  compared with the baseline over the same window of the same log, request by request
  as the SLO contracts count them. Each figure is estimated with an interval at the
  confidence level below, from both versions' requests:
    - HOLD when the whole interval is beyond a bound (confidently worse than allowed),
    - PROMOTE when every interval is within its bound,
    - INCONCLUSIVE otherwise: the report says how many more requests would decide.
  The same bounds as the classifier's (functions/classifier/compare/canary.feature), with the predicted
  value in place of its class mix: a regression answers numbers, not classes. A review
  sends both versions the same rows, so their mean predictions differ only by the model;
  5% of the usual ~150 is ~7 points of disease progression, an eighth of the model's own
  error (its held-out residuals spread by ~50).
  Every number here is part of the contract: change it here to change the rule.

  Background:
    Given the function "diabetes"
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


  Scenario: The candidate predicts neither higher nor lower on the same traffic
    Then the candidate's mean "prediction_mean" is at most 5% away from the baseline's
