Feature: diabetes answers fast
  A linear model over ten numbers: the runtime's own overhead is nearly all of its latency,
  so a slow answer means a queue, not a model.

  Background:
    Given the function "diabetes"

  Scenario: 99% of requests answer within 50 ms
    When I look at the requests of the last 1 hour
    Then for every model version, 99% of requests took at most 50 ms
