-- The pruner deletes webhook_events past retention by arrival time.
CREATE INDEX webhook_events_received ON webhook_events (received_at_ms);
