"""The operations plane: an HTTP API beside the listeners (switch/admin/http.py), Prometheus
metrics read at scrape time (switch/admin/exporter.py), and a live dashboard page."""
