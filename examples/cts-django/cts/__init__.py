"""CTS, reduced to what ctsd's end-to-end test needs: one settings module per country instance."""
