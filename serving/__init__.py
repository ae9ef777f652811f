"""The platform's web service: the volume model's /predict API and the dashboard pages."""
