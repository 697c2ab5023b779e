-- Auto-improve's vector rerank (docs/improve.md): each text's embedding, cached by the model
-- that made it (`provider:model`) and the text's SHA-256, so a text is embedded once per
-- model however many scans rank it. The vector is little-endian f32s, `dims` of them.
CREATE TABLE improve_embeddings (
    model           TEXT NOT NULL,
    text_hash       TEXT NOT NULL,
    dims            INTEGER NOT NULL CHECK (dims > 0),
    vector          BLOB NOT NULL,
    at_ms           INTEGER NOT NULL,
    PRIMARY KEY (model, text_hash)
) WITHOUT ROWID;
