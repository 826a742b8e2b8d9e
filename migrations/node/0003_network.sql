-- The network as replicated state.
--
-- A replica belongs to one network: the SHA-256 of its genesis. The monitoring
-- nodes and targets change through quorum-signed changes applied at their position
-- in the log; each makes a new version. Events record the version they were
-- verified under. A replica made before this migration is bound, on its first
-- start, to the network its node.toml describes (version 1); nothing is re-read.

CREATE TABLE network (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    network_id TEXT    NOT NULL,
    -- canonical JSON of the genesis
    genesis    TEXT    NOT NULL
);

-- Every version after the genesis, with the change that made it.
CREATE TABLE network_changes (
    version        INTEGER PRIMARY KEY,
    zellular_index INTEGER NOT NULL,
    position       INTEGER NOT NULL,
    log_time       INTEGER NOT NULL,
    -- the signed change as sequenced (canonical JSON)
    change         TEXT    NOT NULL,
    -- the events digest after it (the digest chains changes too)
    digest         TEXT    NOT NULL
);

ALTER TABLE events ADD COLUMN network_version INTEGER NOT NULL DEFAULT 1;

-- A target removed by a change: its history ends at the change's sync time.
ALTER TABLE states ADD COLUMN monitored_until INTEGER;
