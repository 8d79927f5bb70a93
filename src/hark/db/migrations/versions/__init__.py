"""One module per schema revision, applied in order by `hark.db.migrate`."""
