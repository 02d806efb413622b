"""`dlkit export`: LiteRT files for trained model folders."""
