@milestone1 @k8s @hpa
Feature: The OCR predictor scales out under load and back in when it ends
  The InferenceService runs between 1 and 10 predictor replicas and targets 65% CPU. Sustained load on
  real document pages must add replicas that share it without errors; when the load ends, the extra
  replicas go.

  Scenario: CPU load scales the predictor out, and back in once the load stops
    Given the platform is deployed with the "milestone1" profile
    And the predictor runs 1 replica
    When 8 users start sending document page images to /predict for 480 seconds
    Then the predictor runs at least 3 ready replicas within 5 minutes
    And at least 3 predictor replicas serve part of the load within 2 minutes
    And the error ratio of /predict stays below 1% until the load ends
    And the predictor runs 1 replica within 10 minutes
