-- Switchboard schema, first version (SQLite dialect; keep in step with ../mysql).
-- Times are integers: milliseconds since the Unix epoch.

CREATE TABLE companies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    locale TEXT NOT NULL DEFAULT 'en',
    timezone TEXT NOT NULL DEFAULT 'UTC',
    admin_email TEXT,
    admin_phone TEXT,
    stripe_customer_id TEXT UNIQUE,
    billing_status TEXT NOT NULL DEFAULT 'active',
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE branches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    company_id INTEGER NOT NULL REFERENCES companies(id),
    name TEXT NOT NULL,
    calcom_event_type_id INTEGER UNIQUE,
    timezone TEXT NOT NULL DEFAULT 'UTC'
);

CREATE TABLE phone_numbers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    branch_id INTEGER NOT NULL REFERENCES branches(id),
    number TEXT NOT NULL UNIQUE
);

CREATE TABLE customers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    company_id INTEGER NOT NULL REFERENCES companies(id),
    phone TEXT NOT NULL,
    name TEXT,
    email TEXT,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (company_id, phone)
);

CREATE TABLE calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL UNIQUE,
    company_id INTEGER NOT NULL REFERENCES companies(id),
    branch_id INTEGER NOT NULL REFERENCES branches(id),
    customer_id INTEGER REFERENCES customers(id),
    from_number TEXT NOT NULL,
    to_number TEXT NOT NULL,
    stage INTEGER NOT NULL,
    started_at_ms INTEGER,
    ended_at_ms INTEGER,
    duration_ms INTEGER,
    disconnection_reason TEXT,
    summary TEXT,
    sentiment TEXT,
    successful INTEGER,
    analysis_json TEXT,
    updated_at_ms INTEGER NOT NULL
);

CREATE TABLE appointments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL UNIQUE,
    company_id INTEGER NOT NULL REFERENCES companies(id),
    branch_id INTEGER NOT NULL REFERENCES branches(id),
    customer_id INTEGER REFERENCES customers(id),
    status TEXT NOT NULL,
    title TEXT,
    start_at TEXT NOT NULL,
    end_at TEXT NOT NULL,
    location TEXT,
    attendee_name TEXT,
    attendee_email TEXT,
    attendee_phone TEXT,
    rescheduled_from_uid TEXT,
    cancellation_reason TEXT,
    call_id TEXT,
    updated_at_ms INTEGER NOT NULL
);

CREATE TABLE notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    unique_key TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    template TEXT NOT NULL,
    locale TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    message_id TEXT,
    last_error TEXT,
    created_at_ms INTEGER NOT NULL,
    sent_at_ms INTEGER
);

CREATE TABLE usage_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL UNIQUE,
    company_id INTEGER NOT NULL REFERENCES companies(id),
    seconds INTEGER NOT NULL,
    reported_at_ms INTEGER,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE invoices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stripe_invoice_id TEXT NOT NULL UNIQUE,
    company_id INTEGER NOT NULL REFERENCES companies(id),
    status TEXT NOT NULL,
    amount_due INTEGER NOT NULL,
    amount_paid INTEGER NOT NULL,
    currency TEXT NOT NULL,
    hosted_invoice_url TEXT,
    updated_at_ms INTEGER NOT NULL
);

CREATE TABLE webhook_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    processed_at_ms INTEGER,
    status TEXT NOT NULL,
    error TEXT,
    UNIQUE (provider, event_id)
);
