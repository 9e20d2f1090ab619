@milestone3 @k8s @keda @jobs
Feature: KEDA scales the job workers on queue lag and drains a burst of 1,000 jobs
  The workers cost nothing while the queue is empty: KEDA keeps them at 0 replicas and scales them out
  (up to 10) on the consumer group's lag. A burst of 1,000 jobs must be drained completely, and the
  workers must go back to 0 once it is.

  Background:
    Given the platform is deployed with the "milestone3" profile

  Scenario: An empty queue keeps the workers at zero
    Given the workers run 0 replicas
    And the job queue is empty
    When no job is enqueued for 60 seconds
    Then the workers stayed at 0 replicas throughout
    And KEDA's ScaledObject for the workers is ready and drives its HPA

  Scenario: A burst of 1,000 jobs scales the workers out and is drained
    Given the workers run 0 replicas
    When a client enqueues 1,000 small jobs with known text
    Then the workers run at least 2 ready replicas within 3 minutes
    And all 1,000 jobs succeed within 15 minutes
    And each job's result reads its image's text
    And the queue holds no job, delivered or not, within 60 seconds
    And the workers run 0 replicas within 5 minutes
