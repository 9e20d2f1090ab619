@milestone2 @gateway
Feature: A new model version rolls out under load without failing a request
  Shipping a model must not cost its clients an error. Rolling the predictor to a new model version
  replaces its replicas one at a time: an old replica first turns unready and leaves the gateway's
  rotation while it still serves, finishes what it was doing, and only then stops; a new replica gets
  traffic once its model is loaded and warm. Clients see every request answered, and the answers switch
  to the new version, which every response names.

  Background:
    Given the platform is running

  Scenario: Replicas rolled one at a time under steady load fail no request and switch to the new version
    Given the predictor runs 2 ready replicas behind the gateway
    When "team-a" sends 2 requests per second with a one-line image while the predictor is rolled to a new model version
    Then no request failed
    And every answer names the new model version within 300 seconds of the rollout's start
    And every answer sent after the rollout names the new model version

  @drain
  Scenario: Each old replica drains in order: unready, out of rotation, then closed, then gone
    Given the predictor runs 2 ready replicas behind the gateway
    When "team-a" sends 4 requests per second with a one-line image while the predictor is rolled to a new model version
    Then no request failed
    And each old replica answered /readyz 503 before the gateway took it out of rotation
    And the gateway took each old replica out of rotation before it stopped listening
    And each old replica exited 0 once it had stopped listening

  @k8s
  Scenario: On the cluster a new pod is ready before an old one goes
    Given the predictor runs 2 ready replicas behind the gateway
    When "team-a" sends 2 requests per second with a one-line image while the predictor is rolled to a new model version
    Then no request failed
    And the predictor never had fewer than 2 ready replicas during the rollout
    And each old pod began terminating only once a new pod was ready in its place
