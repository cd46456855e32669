"""Reports: metrics.json, the environment record, and the HTML report with plots."""

from lepton.report.env import environment
from lepton.report.metrics import SCHEMA_VERSION, metrics_document, write_metrics

__all__ = ["SCHEMA_VERSION", "environment", "metrics_document", "write_metrics"]
