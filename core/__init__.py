"""What every service shares: settings, database, tables, image store, job messages."""
