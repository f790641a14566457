"""The federation server: node sessions, jobs, the round engine (sync and async)."""
