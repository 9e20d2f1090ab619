@milestone1 @k8s
Feature: The OCR model is served as a KServe InferenceService
  The platform's unit of deployment is an InferenceService in Standard mode: KServe owns the predictor's
  Deployment, Service and autoscaler. It must report Ready and answer with the contract of the service,
  naming the model and the exact version of its files.

  Scenario: The InferenceService is Ready and reads an image
    Given the platform is deployed with the "milestone1" profile
    And the InferenceService is Ready within 120 seconds
    When a client sends an image reading "Served by KServe"
    Then the response is 200
    And the text read is "Served by KServe"
    And the answer names the model and its version
