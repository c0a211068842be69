-- One counter that every change to products, licenses and accounts moves, whoever makes it
-- (this process, `tollgate admin`, another instance, SQL typed by hand): token issuance keeps
-- licenses and products in memory and drops them when the counter has moved.
CREATE TABLE entitlement_changes (n BIGINT NOT NULL);
INSERT INTO entitlement_changes (n) VALUES (0);

CREATE FUNCTION tollgate_entitlements_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE entitlement_changes SET n = n + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER products_changed AFTER INSERT OR UPDATE OR DELETE ON products
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_entitlements_changed();
CREATE TRIGGER product_refs_changed AFTER INSERT OR UPDATE OR DELETE ON product_refs
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_entitlements_changed();
CREATE TRIGGER licenses_changed AFTER INSERT OR UPDATE OR DELETE ON licenses
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_entitlements_changed();
CREATE TRIGGER license_products_changed AFTER INSERT OR UPDATE OR DELETE ON license_products
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_entitlements_changed();
CREATE TRIGGER accounts_changed AFTER INSERT OR UPDATE OR DELETE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_entitlements_changed();
CREATE TRIGGER account_products_changed AFTER INSERT OR UPDATE OR DELETE ON account_products
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_entitlements_changed();
