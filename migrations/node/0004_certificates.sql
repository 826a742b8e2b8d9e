-- Epoch certificates: the first valid certificate of each epoch, as sequenced,
-- with the table of rows it commits to (computed by this replica when it applied
-- the certificate, and equal to the certified root).

CREATE TABLE certificates (
    epoch           INTEGER PRIMARY KEY,
    network_version INTEGER NOT NULL,
    start           INTEGER NOT NULL,
    end             INTEGER NOT NULL,
    root            TEXT    NOT NULL,
    row_count       INTEGER NOT NULL,
    -- the certificate as sequenced (JSON)
    certificate     TEXT    NOT NULL,
    -- the rows, sorted by address (JSON array)
    rows            TEXT    NOT NULL,
    zellular_index  INTEGER NOT NULL,
    position        INTEGER NOT NULL,
    log_time        INTEGER NOT NULL
);
