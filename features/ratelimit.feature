@milestone2 @gateway @ratelimit
Feature: Each API key is limited to 10 requests per second at the gateway
  One noisy client must not starve the others. The ingress gateway counts requests per API key and
  answers the excess with 429 before it reaches the OCR service, whatever host name the client uses. The
  count restarts every second, as Envoy's global rate limit counts on the cluster.

  Background:
    Given the platform is deployed with the "milestone2" profile
    And the API keys "team-a" and "team-b" are provisioned

  Scenario: A client over its limit is throttled
    When "team-a" sends 20 requests per second with a tiny image for 10 seconds
    Then between 90 and 110 of its requests are admitted
    And every other request is answered 429

  Scenario: A throttled client does not throttle another
    Given the latency of "team-b" alone at 5 requests per second is measured for 5 seconds
    When "team-a" sends 20 requests per second and "team-b" sends 5 per second for 10 seconds
    Then some requests from "team-a" are answered 429
    And every request from "team-b" is served
    And the median latency of "team-b" is at most 4 times its median alone

  Scenario: Two clients over their limits are limited independently
    When "team-a" and "team-b" each send 20 requests per second for 10 seconds
    Then between 90 and 110 requests from "team-a" are admitted
    And between 90 and 110 requests from "team-b" are admitted
    And every other request is answered 429

  Scenario: A throttled client is admitted again after a pause of 2 seconds
    Given "team-a" has been throttled sending 20 requests per second for 3 seconds
    When "team-a" sends a small image through the gateway after a pause of 2 seconds
    Then the gateway answers 200 with the text read

  @k8s
  Scenario: One key's limit holds across every host of the gateway
    When "team-a" sends 10 requests per second to each of the OCR and layout hosts for 10 seconds
    Then between 90 and 110 of its requests are admitted across both hosts
    And every other request is answered 429
    And each host answered some of its requests with 200

  @k8s
  Scenario: With the rate-limit service down, requests are served unlimited
    Given the rate-limit service is down
    When "team-a" sends 15 requests per second with a tiny image for 4 seconds
    Then no request from "team-a" is refused with 429

  @k8s
  Scenario: With the rate-limit service down, a request without an API key is still refused
    Given the rate-limit service is down
    When a client without an API key sends a small image through the gateway
    Then the gateway answers 403
