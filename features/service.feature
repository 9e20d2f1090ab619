@milestone1
Feature: The OCR service reads text and refuses bad input clearly
  The service is the unit of work of the whole platform: everything else scales, protects or watches it.
  It must say when it is alive and when it is ready, read the text of an image with boxes a client can
  draw, count what it does, and refuse bad input with a clear JSON error while staying healthy.

  Background:
    Given the platform is running

  Scenario: The service reports itself alive and ready
    When a client asks the service whether it is alive and ready
    Then /healthz answers 200
    And /readyz answers 200 and names the model

  Scenario: An image with known text is read with boxes, confidence and the request id
    When a client sends an image reading "Invoice 2024 total" with request id "req-1001"
    Then the response is 200
    And the text read is "Invoice 2024 total"
    And every box lies inside the image
    And the confidence is between 0 and 1
    And the reported latency is above 0 ms
    And the request id "req-1001" is echoed in the body and in the X-Request-ID header

  Scenario: A prediction is counted in /metrics
    Given the count of successful /predict requests in /metrics
    When a client sends an image reading "Counted once"
    Then the count of successful /predict requests in /metrics has grown by 1

  Scenario Outline: Bad input is refused with a JSON error and the service stays ready
    When a client sends <input> to /predict
    Then the response is <status> with the error code "<code>"
    And the error names the request id
    And /readyz answers 200 and names the model

    Examples:
      | input                         | status | code                   |
      | a file that is not an image   | 415    | unsupported_media_type |
      | a GIF image                   | 415    | unsupported_media_type |
      | a truncated PNG               | 400    | invalid_image          |
      | an image over 40 megapixels   | 413    | image_too_large        |
      | a decompression bomb          | 413    | image_too_large        |
      | an upload over 10 MiB         | 413    | payload_too_large      |
      | a form without the file field | 422    | validation_error       |

  Scenario: Every request leaves one structured log line
    When tenant "team-a" sends an image reading "Logged line" with request id "log-2002"
    Then the service logs one line for request "log-2002" with tenant "team-a" and status 200
    And that log line carries a latency in ms and the payload size
