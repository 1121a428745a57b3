"""What the service tells its operators: structured logs, metrics, request ids, the audit trail."""
