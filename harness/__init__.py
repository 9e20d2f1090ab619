"""Provisioning, targets and evidence for the OCR platform's acceptance features."""
