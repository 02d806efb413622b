"""Model builders: pure functions returning an uncompiled `keras.Model`."""
