-- The console's delivery health reads the last hour of attempts per tenant.
CREATE INDEX delivery_attempts_recent ON delivery_attempts (owner, at);
