"""The coordinator's web dashboard: role-aware pages over the REST API's context, live by SSE."""
