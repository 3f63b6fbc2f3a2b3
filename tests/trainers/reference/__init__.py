"""Independent forwards written from the official code of each method, for the tests."""
