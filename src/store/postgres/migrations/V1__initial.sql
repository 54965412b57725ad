-- The gate's records, as JSON text in `record` (the encoding sled uses), with
-- the fields that queries select or order by beside them. Unsigned 64-bit
-- user IDs are kept bit for bit in bigint; times are Unix milliseconds,
-- capped at the largest bigint.

CREATE TABLE clients (
    client_id  text PRIMARY KEY,
    author     bigint NOT NULL,
    created_on bigint NOT NULL,
    -- NULL once deleted: the row stays, so that no import brings it back.
    record     text
);
CREATE INDEX clients_live_by_author ON clients (author, created_on) WHERE record IS NOT NULL;

CREATE TABLE codes (
    digest      bytea PRIMARY KEY CHECK (length(digest) = 32),
    user_id     bigint NOT NULL,
    created_on  bigint NOT NULL,
    expires_at  bigint NOT NULL,
    -- Set when the code is exchanged; the record then names the key.
    redeemed_at bigint,
    record      text NOT NULL
);
CREATE INDEX codes_by_user ON codes (user_id, created_on);
CREATE INDEX codes_by_expiry ON codes (expires_at);

CREATE TABLE keys (
    digest      bytea PRIMARY KEY CHECK (length(digest) = 32),
    -- NULL once revoked, with the record: the digest stays, so that no
    -- import brings the key back.
    token_id    text UNIQUE,
    user_id     bigint NOT NULL,
    from_client text,
    created_on  bigint NOT NULL,
    record      text
);
CREATE INDEX keys_live_by_user ON keys (user_id) WHERE record IS NOT NULL;
CREATE INDEX keys_live_by_client ON keys (from_client) WHERE record IS NOT NULL;
