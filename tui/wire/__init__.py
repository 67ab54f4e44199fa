"""What the server and its clients share: the protocol's messages and where the socket lives."""
