-- A company's own Cal.com API key (falls back to CALCOM_API_KEY when NULL).
ALTER TABLE companies ADD COLUMN calcom_api_key VARCHAR(255) NULL;
