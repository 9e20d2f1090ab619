@milestone1 @prometheus
Feature: Prometheus sees the service's traffic, latency and identity
  Operators run the platform from its metrics: a request rate, a tail latency and the model that answers.
  After real traffic, the real Prometheus that scrapes the service must report all three. Rates use
  windows of one minute, at least four scrape intervals wherever the platform runs. The platform's own
  recording rules are evaluated wherever it runs, so operators' dashboards and alerts see the same series.

  Background:
    Given the platform is running
    And Prometheus scrapes the OCR service

  Scenario: A burst of requests shows up as a request rate and a p95 latency
    When 4 users send small images to /predict for 10 seconds
    Then at least 10 requests were answered
    And the error ratio of /predict stays below 1%
    And the PromQL "sum(rate(ocr_http_requests_total{route="/predict",status="200"}[1m]))" is above 0 within 90 seconds
    And the PromQL "histogram_quantile(0.95, sum by (le) (rate(ocr_http_request_duration_seconds_bucket{route="/predict"}[1m])))" is above 0 within 90 seconds
    And the PromQL "sum(ocr:http_requests:rate5m)" is above 0 within 90 seconds

  Scenario: The model that answers is visible to Prometheus
    Then the PromQL "count(ocr_model_info{name="pp-ocr"})" is at least 1 within 90 seconds
    And the PromQL "max(ocr_ready)" is equal to 1 within 90 seconds
