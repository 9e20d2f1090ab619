@models
Feature: The platform serves more than one model, and each names itself
  The same service code serves the OCR model (the default), a document layout model and a table model, each
  in a service of its own, chosen by a setting (the table model in the full profile only). Each answers in
  its own shape, through /predict and through the Open Inference Protocol, and names itself in every answer
  and in /metrics (name, version, digest of its files), so a client and a dashboard always know which model,
  in which version, answered.

  Background:
    Given the platform is running

  @milestone1
  Scenario: The OCR model reads the text of a page and names itself
    When a client sends a document page to the "ocr" model
    Then the response is 200
    And the answer has the text of the page and its boxes
    And the answer names the model "pp-ocr" with the version and digest its /metrics shows

  @milestone1
  Scenario: The layout model finds the regions of a page and names itself
    When a client sends a document page to the "layout" model
    Then the response is 200
    And the answer finds title, text and figure regions inside the page
    And the answer names the model "layout" with the version and digest its /metrics shows

  @tables
  Scenario: The table model reads a drawn table as HTML and cells and names itself
    When a client sends a document page to the "table" model
    Then the response is 200
    And the answer is the table as drawn, as HTML and as cells
    And the answer names the model "table" with the version and digest its /metrics shows

  @tables @gateway
  Scenario: A table is read end to end through the gateway, with an API key
    When a client with an API key sends a drawn table to the "table" model through the gateway
    Then the response is 200
    And the answer is the table as drawn, as HTML and as cells

  Scenario Outline: Each model answers over the Open Inference Protocol with the outputs it declares
    When a client sends a document page to the "<model>" model over the Open Inference Protocol
    Then the response is 200
    And the inference answer names the model "<name>" with the version and digest its /metrics shows
    And the inference answer carries every output its metadata lists, and no other

    @milestone1
    Examples:
      | model  | name   |
      | ocr    | pp-ocr |
      | layout | layout |

    @tables
    Examples:
      | model | name  |
      | table | table |
