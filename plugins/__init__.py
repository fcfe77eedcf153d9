"""cmp's built-in components, registered through entry points like any plugin."""
