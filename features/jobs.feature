@milestone3 @jobs
Feature: Every queued OCR job is done exactly once, whatever happens to a worker
  Bursts go through the queue: clients enqueue images and fetch the results later while workers drain
  the queue. Workers crash and are scaled in at any moment; no job may be lost, stay stuck, or be
  finished twice, and a job that can never succeed must end failed with its reason.

  Background:
    Given the platform is running
    And 2 workers are consuming the job queue

  Scenario: 40 small jobs are all read correctly and the queue drains
    When a client enqueues 40 small jobs with known text
    Then all 40 jobs succeed within 120 seconds
    And each job's result reads its image's text
    And the queue lag is 0 within 10 seconds

  @sigkill
  Scenario: A worker killed mid-job loses nothing
    Given a client has enqueued 10 document page jobs
    When a worker is killed with SIGKILL while it runs a job
    Then all 10 jobs succeed within 180 seconds
    And each job ended in its final state exactly once
    And no job is left running
    And the queue lag is 0 within 10 seconds

  @k8s
  Scenario: A worker whose pod is deleted with no grace period loses nothing
    Given a client has enqueued 10 document page jobs
    When a worker's pod is deleted with no grace period while it runs a job
    Then all 10 jobs succeed within 180 seconds
    And each job ended in its final state exactly once
    And no job is left running
    And the queue lag is 0 within 10 seconds

  Scenario: A worker stopped with SIGTERM finishes its job and exits cleanly
    Given a client has enqueued 6 document page jobs
    When a worker is sent SIGTERM while it runs a job
    Then that worker exits with code 0 within 60 seconds
    And the job it was running succeeds, finished by that worker
    And all 6 jobs succeed within 180 seconds

  Scenario: A job that fails every time ends failed after 3 attempts
    When a job whose stored image is corrupt is queued
    Then the job is failed within 60 seconds after 3 attempts
    And the job's error explains why it failed
    And the job is listed among the failed jobs
    And the queue lag is 0 within 10 seconds

  Scenario: A bad image is refused at once and never queued
    When a client enqueues a file that is not an image
    Then the response is 415 with the error code "unsupported_media_type"
    And nothing was queued
