-- Switchboard schema, first version (MariaDB/MySQL dialect; keep in step with ../sqlite).
-- Times are integers: milliseconds since the Unix epoch.

CREATE TABLE companies (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    name TEXT NOT NULL,
    locale VARCHAR(64) NOT NULL DEFAULT 'en',
    timezone VARCHAR(64) NOT NULL DEFAULT 'UTC',
    admin_email TEXT,
    admin_phone TEXT,
    stripe_customer_id VARCHAR(191) UNIQUE,
    billing_status VARCHAR(64) NOT NULL DEFAULT 'active',
    created_at_ms BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE branches (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    company_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    calcom_event_type_id BIGINT UNIQUE,
    timezone VARCHAR(64) NOT NULL DEFAULT 'UTC'
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE phone_numbers (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    branch_id BIGINT NOT NULL,
    number VARCHAR(64) NOT NULL UNIQUE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE customers (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    company_id BIGINT NOT NULL,
    phone VARCHAR(64) NOT NULL,
    name TEXT,
    email TEXT,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (company_id, phone)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE calls (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    call_id VARCHAR(191) NOT NULL UNIQUE,
    company_id BIGINT NOT NULL,
    branch_id BIGINT NOT NULL,
    customer_id BIGINT,
    from_number TEXT NOT NULL,
    to_number TEXT NOT NULL,
    stage BIGINT NOT NULL,
    started_at_ms BIGINT,
    ended_at_ms BIGINT,
    duration_ms BIGINT,
    disconnection_reason TEXT,
    summary TEXT,
    sentiment TEXT,
    successful BIGINT,
    analysis_json TEXT,
    updated_at_ms BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE appointments (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    uid VARCHAR(191) NOT NULL UNIQUE,
    company_id BIGINT NOT NULL,
    branch_id BIGINT NOT NULL,
    customer_id BIGINT,
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
    updated_at_ms BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE notifications (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    unique_key VARCHAR(191) NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    template TEXT NOT NULL,
    locale TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    message_id TEXT,
    last_error TEXT,
    created_at_ms BIGINT NOT NULL,
    sent_at_ms BIGINT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE usage_events (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    call_id VARCHAR(191) NOT NULL UNIQUE,
    company_id BIGINT NOT NULL,
    seconds BIGINT NOT NULL,
    reported_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE invoices (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    stripe_invoice_id VARCHAR(191) NOT NULL UNIQUE,
    company_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    amount_due BIGINT NOT NULL,
    amount_paid BIGINT NOT NULL,
    currency TEXT NOT NULL,
    hosted_invoice_url TEXT,
    updated_at_ms BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE webhook_events (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    provider VARCHAR(16) NOT NULL,
    event_id VARCHAR(191) NOT NULL,
    event_type TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    processed_at_ms BIGINT,
    status TEXT NOT NULL,
    error TEXT,
    UNIQUE (provider, event_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
