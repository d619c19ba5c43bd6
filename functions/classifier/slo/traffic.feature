Feature: Which model versions are still called
  An old model version can only be retired once nobody calls it any more. These
  questions are answered from the request log of the last day.

  Background:
    Given the function "classifier"

  Scenario: The retired version v1.1.0 receives no traffic, so it can be deleted
    When I look at the requests of the last 24 hours
    Then model version "v1.1.0" is no longer called
