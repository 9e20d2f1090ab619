@milestone1 @k8s
Feature: The cluster is ready to host the platform
  Everything else stands on a working cluster: nodes that accept work, the namespaces the platform
  installs into, and a metrics API, without which no HorizontalPodAutoscaler can ever scale.

  Scenario: The nodes are Ready and the platform's namespaces exist
    When the cluster is asked for its nodes, namespaces and node metrics
    Then every node is Ready within 60 seconds
    And the namespaces "kube-system", "cert-manager", "monitoring", "kserve" and "ocr-dev" exist

  Scenario: The metrics API answers for every node
    When the cluster is asked for its nodes, namespaces and node metrics
    Then the metrics API reports the CPU and memory of every node within 120 seconds
