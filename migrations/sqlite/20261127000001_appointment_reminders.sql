-- Reminders decided per appointment and kind (`reminder_24h`, `reminder_2h`): the unique key
-- lets exactly one `notify.reminders` run count a reminder as new, however many overlap.
-- `enqueued_at_ms` is set once its notifications are on the queue (a run that died before
-- that leaves it NULL, and the next run enqueues them).
CREATE TABLE appointment_reminders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    appointment_uid TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    enqueued_at_ms INTEGER,
    UNIQUE (appointment_uid, kind)
);
