"""HTTP and WebSocket APIs: dashboard-api and orchestration."""
