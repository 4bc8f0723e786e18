-- The broker's persistent MQTT sessions (clean_session=false, or an MQTT 5 session expiry),
-- kept here so that a daemon restart or a power cut does not lose what waits for a tablet:
-- the session, its subscriptions, and every QoS 1/2 message routed to it that it has not
-- acknowledged yet; and the retained messages. The box's own state: not synced, no event.
-- Additive (older builds do not see these tables), so it keeps their readable_by.
CREATE TABLE mqtt_sessions (
    client_id   TEXT PRIMARY KEY,
    -- How long the session outlives its connection (seconds).
    expiry_secs INTEGER NOT NULL CHECK (expiry_secs > 0),
    -- 1 while a connection holds it; a daemon that stopped with it connected counts it as
    -- disconnected at its next start.
    connected   INTEGER NOT NULL CHECK (connected IN (0, 1)),
    -- Unix seconds of the last connect or disconnect.
    seen_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE mqtt_subscriptions (
    client_id TEXT NOT NULL REFERENCES mqtt_sessions (client_id) ON DELETE CASCADE,
    filter    TEXT NOT NULL,
    qos       INTEGER NOT NULL CHECK (qos IN (0, 1, 2)),
    PRIMARY KEY (client_id, filter)
) STRICT;

CREATE TABLE mqtt_messages (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL REFERENCES mqtt_sessions (client_id) ON DELETE CASCADE,
    topic     TEXT NOT NULL,
    qos       INTEGER NOT NULL CHECK (qos IN (1, 2)),
    payload   BLOB NOT NULL
) STRICT;
CREATE INDEX mqtt_messages_client ON mqtt_messages (client_id, id);

-- The retained message of each topic (an empty payload deletes it), as the broker holds it.
CREATE TABLE mqtt_retained (
    topic      TEXT PRIMARY KEY,
    qos        INTEGER NOT NULL CHECK (qos IN (0, 1, 2)),
    payload    BLOB NOT NULL,
    -- Unix seconds; NULL: kept until replaced.
    expires_at INTEGER
) STRICT;
