@milestone1 @prometheus
Feature: Prometheus sees the service's traffic, latency and identity
  Operators run the platform from its metrics: a request rate, a tail latency and the model that answers.
  After real traffic, the real Prometheus that scrapes the service must report all three. Rates use
  windows of one minute, at least four scrape intervals wherever the platform runs. The platform's own
  recording rules are evaluated wherever it runs, so operators' dashboards and alerts see the same series.

  Background:
    Given the platform is running
    And Prometheus scrapes the OCR service

  Scenario: A burst of requests shows up as a request count, a p95 latency and a recorded rate
    Given Prometheus has counted every /predict request so far
    When a client sends 10 small images per second to /predict for 10 seconds
    Then the error ratio of /predict stays below 1%
    And Prometheus counts as many /predict requests as the client sent, within 1%, within 90 seconds
    And the p95 latency of /predict in Prometheus is above 0 and at most 2 times the client's own p95, within 90 seconds
    And the platform's recorded request rate is above 0 within 90 seconds

  Scenario: The model that answers is visible to Prometheus
    When Prometheus has scraped the OCR service for 5 seconds
    Then the number of services reporting the pp-ocr model is at least 1 within 90 seconds
    And the readiness of the OCR service is equal to 1 within 90 seconds
