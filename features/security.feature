@milestone2 @k8s @istio
Feature: Only clients with a provisioned API key reach the OCR service
  The ingress gateway is the platform's only door. Inside the mesh every call is mutual TLS and denied
  unless a policy allows it; at the gateway a request needs an API key the platform provisioned.

  Background:
    Given the platform is deployed with the "milestone2" profile
    And the API keys "team-a" and "team-b" are provisioned

  Scenario: A request without an API key is refused at the gateway
    When a client without an API key sends a small image through the gateway
    Then the gateway answers 403

  Scenario: A request with an unknown API key is refused at the gateway
    When a client with the API key "not-a-provisioned-key" sends a small image through the gateway
    Then the gateway answers 403

  Scenario: A request with a provisioned API key is served
    When "team-a" sends a small image through the gateway
    Then the gateway answers 200 with the text read
