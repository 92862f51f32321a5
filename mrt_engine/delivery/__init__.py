"""Delivery (R1/R2): outbox claim/send/retry/dead-letter and the workers that drain it."""

# A delivery's status: pending -> sent, or retrying (with backoff) -> dead after the last attempt;
# silenced: stopped by a silence (mrt_engine/silence.py), out of the queue, sent again only by
# an operator (resend, replay). Here, not in the outbox module, so the command line checks
# ``--status`` without the store.
STATUSES = ("pending", "retrying", "sent", "dead", "silenced")
