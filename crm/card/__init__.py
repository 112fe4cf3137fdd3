"""The call-center operator's client card: search, card, queue, incoming calls, actions."""
