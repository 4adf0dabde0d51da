-- The order projection and its inbox. Portable SQL: PostgreSQL and SQLite run it unchanged.

-- Every event applied, by id: a redelivered event finds its id here and has no second effect.
CREATE TABLE IF NOT EXISTS inbox (
    event_id        TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL,
    source_topic    TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset   BIGINT NOT NULL,
    kind            TEXT NOT NULL
);

-- Latest state per order (the state machine of the sample processor).
CREATE TABLE IF NOT EXISTS orders (
    order_id        TEXT PRIMARY KEY,
    customer_id     TEXT NOT NULL,
    state           TEXT NOT NULL,
    last_sequence   BIGINT NOT NULL,
    amount_minor    BIGINT NOT NULL
);

-- Running totals per customer.
CREATE TABLE IF NOT EXISTS customer_totals (
    customer_id     TEXT PRIMARY KEY,
    orders          BIGINT NOT NULL,
    paid_minor      BIGINT NOT NULL
);
