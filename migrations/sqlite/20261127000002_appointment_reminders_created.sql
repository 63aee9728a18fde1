-- The pruner deletes appointment_reminders rows past retention by creation time.
CREATE INDEX appointment_reminders_created ON appointment_reminders (created_at_ms);
