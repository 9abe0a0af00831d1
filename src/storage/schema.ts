// The storage schema, as numbered migrations applied in order; `meta.schema_version` records the last.

export const MIGRATIONS: string[] = [
  // 1: sessions with their will, subscriptions, retained messages
  `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   CREATE TABLE sessions (
     client_id TEXT PRIMARY KEY,
     version INTEGER NOT NULL,
     expiry INTEGER NOT NULL,          -- session expiry interval, seconds (0: ends with the connection)
     connected INTEGER NOT NULL,       -- 1 while a connection holds the session
     expires_at INTEGER,               -- ms, while disconnected
     will_topic TEXT,
     will_payload BLOB,
     will_qos INTEGER,
     will_retain INTEGER,
     will_props TEXT,
     will_delay INTEGER,
     will_at INTEGER                   -- ms, a delayed will that is owed
   );
   CREATE TABLE subscriptions (
     client_id TEXT NOT NULL,
     filter TEXT NOT NULL,
     qos INTEGER NOT NULL,
     no_local INTEGER NOT NULL,
     retain_as_published INTEGER NOT NULL,
     retain_handling INTEGER NOT NULL,
     sub_id INTEGER,
     PRIMARY KEY (client_id, filter)
   );
   CREATE TABLE retained (
     topic TEXT PRIMARY KEY,
     payload BLOB NOT NULL,
     qos INTEGER NOT NULL,
     props TEXT,
     expires_at INTEGER
   );`,
  // 2: durable sessions. A message body is stored once and referenced by one delivery row per
  // session; rows are queued (state 0), sent and unacknowledged (1), or PUBREC'd with PUBREL sent (2).
  `CREATE TABLE messages (
     id INTEGER PRIMARY KEY,
     topic TEXT NOT NULL,
     payload BLOB NOT NULL,
     qos INTEGER NOT NULL,
     retain INTEGER NOT NULL,
     props TEXT,
     expires_at INTEGER
   );
   CREATE TABLE deliveries (
     seq INTEGER PRIMARY KEY,          -- publish order
     client_id TEXT NOT NULL,
     msg_id INTEGER NOT NULL,
     qos INTEGER NOT NULL,
     retain INTEGER NOT NULL,
     bytes INTEGER NOT NULL,
     state INTEGER NOT NULL,
     packet_id INTEGER
   );
   CREATE INDEX deliveries_by_client ON deliveries (client_id, state, seq);
   CREATE INDEX deliveries_by_message ON deliveries (msg_id);
   CREATE TABLE inbound_qos2 (
     client_id TEXT NOT NULL,
     packet_id INTEGER NOT NULL,
     PRIMARY KEY (client_id, packet_id)
   );`,
  // 3: the MQTT 5 subscription identifiers a delivery carries ("7,8"), kept for queued and re-sent messages
  `ALTER TABLE deliveries ADD COLUMN sub_ids TEXT;`,
  // 4: what authentication granted a session's latest connection (JSON), so its read rights apply
  // to what is queued for it while it is offline, also after a restart
  // ... and whether the session was created durable (its queue is stored), which a later
  // Session Expiry of 0 does not change
  `ALTER TABLE sessions ADD COLUMN grant_json TEXT;
   ALTER TABLE sessions ADD COLUMN durable INTEGER;
   ALTER TABLE sessions ADD COLUMN retained_backlog TEXT; -- JSON [{filter, after}]: retained messages still owed
   UPDATE sessions SET durable = CASE WHEN expiry > 0 THEN 1 ELSE 0 END;
   -- the shared subscription a delivery came through ("$share/<group>/<filter>"), to re-route it
   ALTER TABLE deliveries ADD COLUMN share TEXT;
   -- a connection's inbound topic aliases that outgrew its socket attachment (16 KiB)
   CREATE TABLE topic_aliases (
     client_id TEXT NOT NULL,
     alias INTEGER NOT NULL,
     topic TEXT NOT NULL,
     PRIMARY KEY (client_id, alias)
   );`,
  // 5: the authenticated identity a session belongs to (NULL: nobody's, e.g. made with AUTH_MODE=none)
  `ALTER TABLE sessions ADD COLUMN owner TEXT;`,
  // 6: rules (src/rules): sends of QoS >= 1 messages to a rule's destination not yet confirmed,
  // each with its own copy of the message; retried from the alarm at next_at, deleted once sent
  `CREATE TABLE rule_sends (
     id INTEGER PRIMARY KEY,
     rule TEXT NOT NULL,               -- the rule's name
     topic TEXT NOT NULL,
     payload BLOB NOT NULL,
     qos INTEGER NOT NULL,
     retain INTEGER NOT NULL,
     props TEXT,
     expires_at INTEGER,
     client_id TEXT,                   -- the publisher (NULL: the HTTP API)
     created_at INTEGER NOT NULL,      -- ms, when the broker took the message
     attempts INTEGER NOT NULL,        -- failed attempts so far
     next_at INTEGER NOT NULL          -- ms: the next attempt (while one is under way: when it is given up for lost)
   );
   CREATE INDEX rule_sends_due ON rule_sends (next_at);`,
  // 7: scale-out (docs/scale-out.md §2): one namespace over K shards. Empty at K = 1.
  // (a) chunks of entries owed to another shard, stored before the publisher is acknowledged
  `CREATE TABLE shard_outbox (
     target INTEGER NOT NULL,          -- shard index
     seq INTEGER NOT NULL,             -- chunk number on the link (this shard -> target), from 1, never reused
     entries BLOB NOT NULL,            -- packed entries (src/shards/wire.ts)
     created_at INTEGER NOT NULL,      -- ms
     attempts INTEGER NOT NULL,        -- failed calls that carried it
     next_at INTEGER NOT NULL,         -- ms: the next attempt after a failure
     PRIMARY KEY (target, seq)
   ) WITHOUT ROWID;                    -- keyed by its primary key alone: one row written per chunk, not two
   -- (b) both ends of the link with a peer: what it acknowledged of ours, what we applied of its (dedup watermark)
   CREATE TABLE shard_links (
     peer INTEGER PRIMARY KEY,
     acked_seq INTEGER NOT NULL DEFAULT 0,
     applied_seq INTEGER NOT NULL DEFAULT 0
   );
   -- a peer's announced filters, kept by the receiver so a woken shard knows them without asking
   CREATE TABLE shard_interest (
     peer INTEGER NOT NULL,
     filter TEXT NOT NULL,
     PRIMARY KEY (peer, filter)
   ) WITHOUT ROWID;
   -- retained last-writer-wins across shards: the version of the write that made the row (NULL at K = 1)
   ALTER TABLE retained ADD COLUMN version INTEGER;
   -- connections whose socket is on another shard (the entrance) and whose session is here (src/broker/tunnels.ts)
   CREATE TABLE shard_tunnels (
     id TEXT PRIMARY KEY,
     entrance INTEGER NOT NULL,
     attachment TEXT NOT NULL
   ) WITHOUT ROWID;`,
  // 8: scale-out: the version of a retained message's removal (K > 1), so that an older copy of it
  // arriving later from another shard does not bring it back. Empty at K = 1.
  `CREATE TABLE retained_removed (
     topic TEXT PRIMARY KEY,
     version INTEGER NOT NULL
   ) WITHOUT ROWID;`,
  // 9: scale-out: a peer's exact filters as 32-bit fingerprints (src/shards/fingerprint.ts), one
  // small row each (no string), so a woken shard reloads a million of them without the strings;
  // shard_interest keeps the wildcard and shared filters. Empty at K = 1.
  `CREATE TABLE shard_interest_fp (
     peer INTEGER NOT NULL,
     fp INTEGER NOT NULL,              -- 0 … 2^32 - 1
     PRIMARY KEY (peer, fp)
   ) WITHOUT ROWID;`,
];
