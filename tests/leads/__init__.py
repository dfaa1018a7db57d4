"""Tests for issue 4: the lead message, producers and delivery."""
