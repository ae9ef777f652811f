"""Sensors: what starts runs when something happens (a new minute, a missing history, a new
query, a failed run). Schedules live with their jobs in the domains."""
