-- The dev sequencer's durable log: every batch with its chaining hash, and every
-- finalization (sync point) with its BN254 signature. Restarting keeps both.

-- One row per sequenced batch; (app, idx) is the position in the app's sequence.
CREATE TABLE batches (
    app           TEXT    NOT NULL,
    idx           INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    chaining_hash TEXT    NOT NULL,
    -- unix seconds at which the batch was sequenced
    received_at   INTEGER NOT NULL,
    PRIMARY KEY (app, idx)
);

-- One row per sync point: the finality signature covers batches up to idx.
CREATE TABLE finalizations (
    app           TEXT    NOT NULL,
    idx           INTEGER NOT NULL,
    parent_index  INTEGER NOT NULL,
    chaining_hash TEXT    NOT NULL,
    timestamp     INTEGER NOT NULL,
    signature     TEXT    NOT NULL,
    -- JSON array of operator ids that did not sign
    nonsigners    TEXT    NOT NULL,
    tag           INTEGER NOT NULL,
    PRIMARY KEY (app, idx)
);
