Feature: Server faults stay rare, whichever model version answers
  A server error (HTTP 5xx) is our fault, never the caller's. Client mistakes such as a
  broken image (4xx) do not count. Every model version is judged on its own requests.

  Background:
    Given the function "classifier"

  Scenario: At most 1 request in 100 fails with a server error, for every model version
    When I look at the requests of the last 1 hour
    Then for every model version, at most 1% of requests failed with a server error (5xx)
