"""Access control for tunnels: token types (§3.1), resource boundaries (§3.2) and app-credential minting
(§3.3). Pure modules: stored credentials are reached through the small Protocols in `tokens`."""
