"""Database guards of the ledger, so no code path (nor a hand-written SQL) can break them:

- a deferred constraint trigger: at commit, every journal has at least two legs summing to zero;
- journals and legs are append-only: UPDATE and DELETE are refused;
- the platform accounts REVENUE and FUNDING exist.
"""

from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION billing_check_journal_balanced(p_journal_id bigint) RETURNS void AS $$
DECLARE
    total numeric;
    leg_count integer;
BEGIN
    SELECT COALESCE(SUM(amount_micros), 0), COUNT(*) INTO total, leg_count
      FROM billing_journalleg WHERE journal_id = p_journal_id;
    IF total <> 0 OR leg_count < 2 THEN
        RAISE EXCEPTION 'ledger journal % is unbalanced: % legs summing to %', p_journal_id, leg_count, total
            USING ERRCODE = 'check_violation';
    END IF;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION billing_leg_balanced_trigger() RETURNS trigger AS $$
BEGIN
    PERFORM billing_check_journal_balanced(NEW.journal_id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION billing_journal_balanced_trigger() RETURNS trigger AS $$
BEGIN
    PERFORM billing_check_journal_balanced(NEW.id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER billing_journalleg_balanced
    AFTER INSERT ON billing_journalleg DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION billing_leg_balanced_trigger();

CREATE CONSTRAINT TRIGGER billing_journal_has_balanced_legs
    AFTER INSERT ON billing_journal DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION billing_journal_balanced_trigger();

CREATE OR REPLACE FUNCTION billing_append_only_trigger() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER billing_journal_append_only BEFORE UPDATE OR DELETE ON billing_journal
    FOR EACH ROW EXECUTE FUNCTION billing_append_only_trigger();
CREATE TRIGGER billing_journalleg_append_only BEFORE UPDATE OR DELETE ON billing_journalleg
    FOR EACH ROW EXECUTE FUNCTION billing_append_only_trigger();

INSERT INTO billing_account (tenant_id, kind) VALUES (NULL, 'REVENUE'), (NULL, 'FUNDING')
    ON CONFLICT DO NOTHING;
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS billing_journalleg_append_only ON billing_journalleg;
DROP TRIGGER IF EXISTS billing_journal_append_only ON billing_journal;
DROP TRIGGER IF EXISTS billing_journal_has_balanced_legs ON billing_journal;
DROP TRIGGER IF EXISTS billing_journalleg_balanced ON billing_journalleg;
DROP FUNCTION IF EXISTS billing_append_only_trigger();
DROP FUNCTION IF EXISTS billing_journal_balanced_trigger();
DROP FUNCTION IF EXISTS billing_leg_balanced_trigger();
DROP FUNCTION IF EXISTS billing_check_journal_balanced(bigint);
"""


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
