-- The transactional outbox: a service records an order event in the same transaction as its own
-- change. `orderstream relay` publishes unsent rows in id order and marks them sent.
-- (SQLite's INTEGER PRIMARY KEY is its row id: assigned in insert order, like PostgreSQL's identity.)
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL UNIQUE,
    order_id        TEXT NOT NULL,
    event_json      TEXT NOT NULL,
    sent            INTEGER NOT NULL DEFAULT 0
);

-- The relay's query: unsent rows in id order.
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (id) WHERE sent = 0;
