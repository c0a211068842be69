-- A product can be withdrawn without taking it from the licenses and accounts that hold it: an
-- inactive product opens nothing until it is active again.
ALTER TABLE products ADD COLUMN active BOOLEAN NOT NULL DEFAULT TRUE;
