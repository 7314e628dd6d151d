"""Uplinks: MQTT (embedded broker or external), CoAP, and the pipeline they feed."""
