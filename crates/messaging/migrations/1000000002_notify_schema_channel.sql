-- One trigger function for every "wake this schema's listeners" trigger: at commit it
-- notifies `<schema>_<channel>`, the channel named by the trigger's argument. Used by the
-- triggers written after it (earlier ones keep their own functions: applied migrations do
-- not change).
CREATE FUNCTION notify_schema_channel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_' || TG_ARGV[0], '');
    RETURN NULL;
END;
$$;
