"""Moving notifications to providers: instant hand-off, workers, retries and expiry."""
