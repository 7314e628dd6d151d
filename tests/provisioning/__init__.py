"""Tests of places, responders, API keys, devices and enrollment."""
