"""alertbridge: Prometheus Alertmanager and Grafana alerts to WeCom, and back."""

__version__ = "0.1.0"
