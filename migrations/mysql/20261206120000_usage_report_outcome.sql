-- How a call's usage report ended besides `reported_at_ms`: the meter event time chosen for it
-- (fixed at the first attempt so every retry sends the same event), and a refusal for good.
ALTER TABLE usage_events
    ADD COLUMN billed_at_ms BIGINT NULL,
    ADD COLUMN failed_at_ms BIGINT NULL,
    ADD COLUMN report_error VARCHAR(500) NULL;
