"""Webhooks from gateways under ``/hooks/<backend>/...``: verify, store the event once, hand off."""
