-- One counter that every change to products, licenses and accounts moves, whoever makes it
-- (this process, `tollgate admin`, another instance, SQL typed by hand): token issuance keeps
-- licenses and products in memory and drops them when the counter has moved.
CREATE TABLE entitlement_changes (n INTEGER NOT NULL);
INSERT INTO entitlement_changes (n) VALUES (0);

CREATE TRIGGER products_insert AFTER INSERT ON products
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER products_update AFTER UPDATE ON products
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER products_delete AFTER DELETE ON products
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER product_refs_insert AFTER INSERT ON product_refs
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER product_refs_update AFTER UPDATE ON product_refs
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER product_refs_delete AFTER DELETE ON product_refs
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER licenses_insert AFTER INSERT ON licenses
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER licenses_update AFTER UPDATE ON licenses
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER licenses_delete AFTER DELETE ON licenses
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER license_products_insert AFTER INSERT ON license_products
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER license_products_update AFTER UPDATE ON license_products
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER license_products_delete AFTER DELETE ON license_products
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER accounts_insert AFTER INSERT ON accounts
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER accounts_update AFTER UPDATE ON accounts
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER accounts_delete AFTER DELETE ON accounts
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER account_products_insert AFTER INSERT ON account_products
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER account_products_update AFTER UPDATE ON account_products
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
CREATE TRIGGER account_products_delete AFTER DELETE ON account_products
BEGIN UPDATE entitlement_changes SET n = n + 1; END;
