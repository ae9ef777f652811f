"""Sensors and schedules that keep the platform running unattended."""
