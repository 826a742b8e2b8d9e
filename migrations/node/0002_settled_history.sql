-- Settled history (replaces the tables of 0001).
--
-- The apply rules changed: an event is checked against the time of the sync point
-- that finalizes it (late and future events are refused), the replica records that
-- time (log_time), and answers are computed from per-event running totals. A log
-- applied under the old rules may hold events the new rules refuse, so the replica
-- is rebuilt: the cursor goes back to index 0 and the node re-reads the finalized
-- sequence from Zellular, which is the source of truth. Nothing is lost.
DROP TABLE events;
DROP TABLE states;
DROP TABLE cursor;

-- Where the replica is in the Zellular sequence (one row).
CREATE TABLE cursor (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    -- last batch applied in full, and its chaining hash
    zellular_index INTEGER NOT NULL,
    chaining_hash  TEXT    NOT NULL,
    -- items of batch zellular_index + 1 already applied: a transaction holds a
    -- bounded number of events, so a large batch may span several
    partial_items  INTEGER NOT NULL,
    -- the newest sync-point timestamp applied: the replica's clock
    log_time       INTEGER NOT NULL,
    -- chains every applied event, so two replicas compare their whole log in one value
    events_digest  TEXT    NOT NULL,
    events_count   INTEGER NOT NULL
);
INSERT INTO cursor (id, zellular_index, chaining_hash, partial_items, log_time, events_digest, events_count)
VALUES (1, 0, '', 0, 0, '', 0);

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
    -- the sync time the event was checked against (log_time once its batch applied)
    log_time             INTEGER NOT NULL,
    -- running totals of this address up to and including this event, so any window
    -- is answered with two index look-ups: seconds down in [0, timestamp] ...
    down_total           INTEGER NOT NULL,
    -- ... and the number of down transitions
    outages              INTEGER NOT NULL,
    -- the events digest after this event (names the first bad row on a check)
    digest               TEXT    NOT NULL
);
-- Range queries and running-total look-ups of one address.
CREATE INDEX events_by_address_time ON events (address, timestamp, seq);

-- Current replicated state of every address, with its running totals.
CREATE TABLE states (
    address    TEXT    PRIMARY KEY,
    state      TEXT    NOT NULL CHECK (state IN ('up', 'down')),
    since      INTEGER NOT NULL,
    down_total INTEGER NOT NULL,
    outages    INTEGER NOT NULL,
    -- when the network began monitoring it: the sync time of the first batch
    -- applied while it was a target (NULL until then). Before it, its state is
    -- unknown, not up.
    monitored_since INTEGER
);
