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
];
