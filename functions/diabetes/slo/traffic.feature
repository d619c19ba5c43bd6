Feature: diabetes is called
  A function nobody calls any more is either retired or cut off from its clients (a
  broken route, a client that gave up on it), and its other contracts would have nothing
  to judge. The floor is this function's own: a clinic's batch job calls it every few
  minutes; set yours from your traffic.

  Background:
    Given the function "diabetes"

  Scenario: diabetes answered at least 100 requests in the last hour
    When I look at the requests of the last 1 hour
    Then the function was called at least 100 times
