"""Pure checks: each takes the transaction (or envelope), a Resolver and its config section."""
