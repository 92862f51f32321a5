"""Delivery (R1/R2): outbox claim/send/retry/dead-letter and the workers that drain it."""
