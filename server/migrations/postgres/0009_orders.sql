-- Orders a shop's hook sent (POST /api/v1/hooks/orders): each order id is taken once, with the
-- customer's email and the license the order made or extended ('' while it is being applied).
CREATE TABLE orders (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL,
    license TEXT NOT NULL,
    received BIGINT NOT NULL
);
CREATE INDEX orders_by_email ON orders (email, received);
