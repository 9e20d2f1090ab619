@optional @k8s @knative
Feature: With Knative, an idle predictor scales to zero and wakes on the next request
  For rarely used models the predictor may cost nothing while idle. In the scale-to-zero profile the
  predictor has no replica after Knative's grace period, and the next request is still answered, within a
  stated budget: its latency and the new pod's start are recorded for the decision between zero and one.

  Background:
    Given the platform is deployed with the "scale-to-zero" profile

  Scenario: An idle predictor scales to zero
    Given a client has just been answered by the predictor
    When the predictor is left idle
    Then the predictor runs 0 replicas within 3 minutes

  Scenario: A request to a predictor at zero is answered within the wake-up budget, and it scales to zero again
    Given the predictor runs 0 replicas
    When a client sends an image reading "Cold start" to the predictor at zero
    Then the response is 200
    And the text read is "Cold start"
    And the request that woke the predictor was answered within 30 seconds
    And the predictor runs 0 replicas within 3 minutes
