-- Where a product is sold (the vendor's shop): the web flow sends a customer whose license does
-- not cover a ref there, through the portal's buy page. NULL: not on sale here.
ALTER TABLE products ADD COLUMN purchase_url TEXT;
