"""The platform's web service: the volume model's /predict API (and, later, the dashboard pages)."""
