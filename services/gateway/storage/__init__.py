"""SQLite storage of jobs, results and events."""
