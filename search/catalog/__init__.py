"""The catalog: SQLite tables (schema), records, the store and the cold-path reader."""
