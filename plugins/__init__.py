"""Built-in executors, registered through the `runbook` entry-point group like any plugin."""
