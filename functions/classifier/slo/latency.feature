Feature: Requests are answered fast enough, whichever model version answers
  Callers of the image classifier are promised an answer within a quarter of a second
  for 99 requests out of 100. The promise holds for every model version separately,
  so a slow canary cannot hide behind a fast majority.

  Background:
    Given the function "classifier"

  Scenario: 99 in 100 requests are answered within 250 ms, for every model version
    When I look at the requests of the last 1 hour
    Then for every model version, 99% of requests took at most 250 ms
