"""Messaging use cases, one module per area.

* ``policy``: the contact policy in force (caps, gaps, quiet hours, preferred time).
* ``planning``: campaign runs and trigger firings -> outbox Messages (set-based, per batch).
* ``dispatch``: due Messages -> backends, exactly once; consent re-checked at send time.
* ``outbox``: the few other writes of Message status (cancel on withdrawal, transactional).
* ``events``: delivery reports and inbound SMS from gateways (stored once, applied in order).
* ``calls``: call events, DTMF meanings, callback requests, dial retries and blocks.
* ``triggers``: trigger scenarios -> firings.
"""
