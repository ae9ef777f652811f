"""Weather-station readings: the feed (simulated, or One Call 3.0 ``current``/``timemachine``
live), its simulator, and live mode's minute polls and where they are stored.
"""
