"""The interface: the connection to the server, the Session (the UI thread's one copy of
settings and server state), the app, its screens, dialogs and widgets. Never torch."""
