Feature: The function rarely fails on its own account
  Client mistakes are 4xx and do not count here; only server errors (5xx) do.

  Background:
    Given the function being checked

  Scenario: At most 1% of requests fail with a server error
    When I look at the requests of the last 1 hour
    Then for every model version, at most 1% of requests failed with a server error (5xx)
