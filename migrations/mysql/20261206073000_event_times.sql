-- The provider's own time (ms since the epoch) of the event that last wrote each row:
-- Cal.com's `createdAt` for appointments, Stripe's `created` for invoices and for a company's
-- billing status. A webhook writes only when its time is not older than the stored one, so
-- a retried or late event never regresses a row. NULL: written without an event time (the
-- calendar jobs, reconciliation, rows from before this column); any timed event wins over it.
ALTER TABLE appointments ADD COLUMN event_at_ms BIGINT NULL;
ALTER TABLE invoices ADD COLUMN event_at_ms BIGINT NULL;
ALTER TABLE companies ADD COLUMN billing_status_at_ms BIGINT NULL;
