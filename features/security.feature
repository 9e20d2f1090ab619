@milestone2
Feature: Only clients with a provisioned API key reach the OCR service
  The ingress gateway is the platform's only door. At the gateway a request needs an API key the platform
  provisioned, and the tenant a request is logged under is the key's, never one the client names. Inside
  the mesh every call is mutual TLS and denied unless a policy allows it, so a pod that bypasses the
  gateway gets nothing either.

  Background:
    Given the platform is deployed with the "milestone2" profile

  @gateway
  Scenario: A request without an API key is refused at the gateway
    Given the API keys "team-a" and "team-b" are provisioned
    When a client without an API key sends a small image through the gateway
    Then the gateway answers 403

  @gateway
  Scenario: A request with an unknown API key is refused at the gateway
    Given the API keys "team-a" and "team-b" are provisioned
    When a client with the API key "not-a-provisioned-key" sends a small image through the gateway
    Then the gateway answers 403

  @gateway
  Scenario: A request with a provisioned API key is served
    Given the API keys "team-a" and "team-b" are provisioned
    When "team-a" sends a small image through the gateway
    Then the gateway answers 200 with the text read

  @gateway
  Scenario: The tenant is the API key's client, whatever the client claims
    Given the API keys "team-a" and "team-b" are provisioned
    When "team-a" sends a small image through the gateway claiming to be tenant "team-b"
    Then the gateway answers 200 with the text read
    And the service logs that request with tenant "team-a"

  @gateway
  Scenario: With the API-key authorizer down, the gateway refuses even a provisioned key
    Given the API keys "team-a" and "team-b" are provisioned
    And the API-key authorizer is down
    When "team-a" sends a small image through the gateway
    Then the gateway refuses the request with 403

  @k8s @istio
  Scenario: A pod outside the mesh cannot reach the predictor
    Given a pod in the mesh gets an answer from the predictor's sidecar
    When a pod outside the mesh calls the predictor directly
    Then the predictor's sidecar accepts the connection and closes it before any HTTP answer

  @k8s @istio
  Scenario: A pod in the mesh that no policy allows is denied
    When a pod in the mesh with the service account "ocr-intruder" calls the predictor directly
    Then the predictor's sidecar answers 403 to that pod
