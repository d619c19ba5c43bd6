Feature: The function answers fast enough, whichever model version answers
  What every new function promises until its author states its own: 99 requests in 100
  answered within 250 ms, for every model version separately. Change the number here
  and LATENCY_OBJECTIVE_MS in stack.yml together (the alerts count slow requests
  against that setting).

  Background:
    Given the function being checked

  Scenario: 99 in 100 requests are answered within 250 ms, for every model version
    When I look at the requests of the last 1 hour
    Then for every model version, 99% of requests took at most 250 ms
