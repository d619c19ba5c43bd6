Feature: Predictions look like the usual traffic
  A model that suddenly answers the same class for everything, or whose mix of answers
  moves a lot in a short time, is broken even when every request returns 200.
  Only successful predictions (HTTP 200) are counted.

  Background:
    Given the function "classifier"

  Scenario: No single class takes over the predictions
    When I look at the successful predictions of the last 1 hour
    Then no class is the top prediction of more than 40% of them

  # Needs a log that reaches back an hour; a fresh local log (make demo) has no
  # baseline window, so the demo skips it with SLO_TAGS="not @needs-history".
  @needs-history
  Scenario: The class mix does not shift suddenly
    When I look at the successful predictions of the last 30 minutes
    Then compared with the same window 30 minutes earlier, the class mix shifted by a PSI of at most 0.2

  # The bands below describe this classifier's usual production traffic; they only make
  # sense against production logs (skip them with SLO_TAGS="not @production-mix").
  # Class names are the model's own labels (the first name of each ImageNet class in
  # functions/classifier/imagenet_labels.json): "tabby", not "tabby cat".
  @production-mix
  Scenario: The usual classes keep their usual share
    When I look at the successful predictions of the last 1 hour
    Then each of these classes keeps its share of the top predictions
      | class            | at least | at most |
      | golden retriever | 10%      | 25%     |
      | lampshade        | 5%       | 20%     |
      | tabby            | 5%       | 20%     |
      | espresso         | 5%       | 20%     |
      | Egyptian cat     | 3%       | 15%     |
      | daisy            | 3%       | 15%     |
