-- A monitoring node's replica of the downtime log. Applying the finalized Zellular
-- sequence is deterministic, so two replicas at the same index hold identical rows.

-- Where the replica is in the Zellular sequence (one row). events_digest chains
-- every applied event, so two replicas can compare their whole log in one value.
CREATE TABLE cursor (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    zellular_index INTEGER NOT NULL,
    chaining_hash  TEXT    NOT NULL,
    events_digest  TEXT    NOT NULL,
    events_count   INTEGER NOT NULL
);
INSERT INTO cursor (id, zellular_index, chaining_hash, events_digest, events_count)
VALUES (1, 0, '', '', 0);

-- Every applied state transition, in application order (seq).
CREATE TABLE events (
    seq                  INTEGER PRIMARY KEY,
    zellular_index       INTEGER NOT NULL,
    position             INTEGER NOT NULL,  -- index of the event inside its batch
    address              TEXT    NOT NULL,
    state                TEXT    NOT NULL CHECK (state IN ('up', 'down')),
    timestamp            INTEGER NOT NULL,
    aggregated_signature TEXT    NOT NULL,
    non_signing_nodes    TEXT    NOT NULL,  -- JSON array of node ids
    finalized_at         INTEGER NOT NULL   -- timestamp of the covering finality signature
);
-- Range queries: downtime / intervals / epochs of one address over [from, to].
CREATE INDEX events_by_address_time ON events (address, timestamp, seq);

-- Current replicated state of every address (initially up since 0).
CREATE TABLE states (
    address TEXT    PRIMARY KEY,
    state   TEXT    NOT NULL CHECK (state IN ('up', 'down')),
    since   INTEGER NOT NULL
);
