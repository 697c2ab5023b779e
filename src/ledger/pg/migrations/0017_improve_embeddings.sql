-- 0017 (PostgreSQL twin of SQLite's 0017): auto-improve's vector rerank (docs/improve.md).
-- Each text's embedding, cached by the model that made it (`provider:model`) and the text's
-- SHA-256, so a text is embedded once per model however many scans rank it. The vector is
-- little-endian f32s, `dims` of them.
CREATE TABLE improve_embeddings (
    model           TEXT NOT NULL,
    text_hash       TEXT NOT NULL,
    dims            BIGINT NOT NULL CHECK (dims > 0),
    vector          BYTEA NOT NULL,
    at_ms           BIGINT NOT NULL,
    PRIMARY KEY (model, text_hash)
);
