@optional @k8s @knative
Feature: With Knative, an idle predictor scales to zero and wakes on the next request
  For rarely used models the predictor may cost nothing while idle. In the scale-to-zero profile the
  predictor has no replica after Knative's grace period, and the next request is still answered.

  Background:
    Given the platform is deployed with the "scale-to-zero" profile

  Scenario: An idle predictor scales to zero
    Given a client has just been answered by the predictor
    When the predictor is left idle
    Then the predictor runs 0 replicas within 3 minutes

  Scenario: A request to a predictor at zero is answered
    Given the predictor runs 0 replicas
    When a client sends an image reading "Cold start"
    Then the response is 200
    And the text read is "Cold start"
