-- Credentials with a life (issue 17): a device's MQTT password is a secret of its own, no longer
-- its API token, and a device can rotate both without pairing again. Only hashes, like
-- `token_hash`. A rotation waits in `next_*` until the new token is first used; then the pair
-- replaces `token_hash` and `mqtt_hash` in one update.
--
-- Additive: a build before 9 does not see these columns and keeps authenticating the API with
-- `token_hash` (after a finished rotation that is the new token), so it can still use this store.
-- A device paired before 9 has no MQTT credential (NULL) until it rotates once.
ALTER TABLE devices ADD COLUMN mqtt_hash TEXT;
ALTER TABLE devices ADD COLUMN next_token_hash TEXT;
ALTER TABLE devices ADD COLUMN next_mqtt_hash TEXT;
ALTER TABLE devices ADD COLUMN rotated_at TEXT;

CREATE UNIQUE INDEX devices_next_token_hash ON devices (next_token_hash)
    WHERE next_token_hash IS NOT NULL;
